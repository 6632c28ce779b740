"""Sign in with Logto in a Django project.

    python examples/django/app.py            # migrate, then waitress on HOST:PORT (default 127.0.0.1:3000)
    python examples/django/app.py --migrate  # only migrate (before `uvicorn ... asgi:application`)

Configuration comes from the environment or a `.env` file in the current directory (see
settings.py); DJANGO_DATABASE moves the SQLite file. `make demo-django` runs it against a local
development provider.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # settings/urls, and examples/ for `common`

import common  # noqa: E402

from logto_middleware import LogtoConfigError  # noqa: E402

FRAMEWORK = "Django"


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    try:
        host, port = common.listen_address()
        import django

        django.setup()
    except (LogtoConfigError, ValueError) as exc:
        sys.exit(f"{exc}\n{common.SETUP_HINT}")
    from django.conf import settings
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from waitress import create_server

    call_command("migrate", verbosity=0)
    if "--migrate" in sys.argv[1:]:
        return
    common.configure_logging()
    url = settings.LOGTO.base_url or common.public_url(host, port)
    try:
        server = create_server(get_wsgi_application(), host=host, port=port)
    except OSError as exc:
        sys.exit(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    try:
        common.serve(server.run, f"Logto + {FRAMEWORK} example (waitress): open {url}")
    finally:
        server.close()


if __name__ == "__main__":
    main()
