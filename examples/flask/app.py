"""Sign in with Logto in a Flask app.

    python examples/flask/app.py            # waitress on HOST:PORT (default 127.0.0.1:3000)
    waitress-serve --call app:create_app    # from examples/flask

Configuration comes from the environment or a `.env` file in the current directory:
AUTH_LOGTO_ISSUER, AUTH_LOGTO_ID, AUTH_LOGTO_SECRET, AUTH_SECRET, and optionally AUTH_URL,
AUTH_TRUST_HOST and AUTH_REFRESH_LEEWAY. `make demo-flask` runs it against a local development
provider.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from flask import Flask, Response, jsonify, redirect, request
from flask.typing import ResponseReturnValue

from logto_middleware import LogtoConfig, LogtoConfigError, LogtoWSGIMiddleware

sys.path.append(str(Path(__file__).resolve().parents[1]))  # examples/, for the shared pages
import common

FRAMEWORK = "Flask"


def _html(body: str) -> Response:
    return Response(body, mimetype="text/html", headers=common.NO_STORE)


def home() -> Response:
    return _html(common.home_page(request.environ["logto.user"], FRAMEWORK))


def profile() -> ResponseReturnValue:
    user = request.environ["logto.user"]
    if not user.is_authenticated:
        query = request.query_string.decode("latin-1")
        return redirect(common.signin_redirect(request.path, query), code=302)
    return _html(common.profile_page(user, request.environ["logto.session"], FRAMEWORK))


def me() -> ResponseReturnValue:
    # An API answers 401, not a redirect to a sign-in page.
    user = request.environ["logto.user"]
    if not user.is_authenticated:
        response, status = jsonify(common.UNAUTHORIZED), 401
    else:
        response, status = jsonify(common.me_payload(user, request.environ["logto.session"])), 200
    response.headers.update(common.NO_STORE)
    return response, status


def create_app(config: LogtoConfig | None = None) -> Flask:
    """The example app with the middleware; `config` defaults to the environment (and .env)."""
    if config is None:
        config = common.load_config()
    app = Flask(__name__, root_path=str(Path(__file__).resolve().parent))
    app.add_url_rule("/", view_func=home)
    app.add_url_rule("/profile", view_func=profile)
    app.add_url_rule("/api/me", view_func=me)
    app.wsgi_app = LogtoWSGIMiddleware(app.wsgi_app, config)  # type: ignore[method-assign]
    return app


def __getattr__(name: str) -> Flask:
    # `app` for `waitress-serve app:app` or `flask --app app run`, built on first use: importing
    # this module (for `create_app`) needs no configuration.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    try:
        host, port = common.listen_address()
        config = common.load_config()
    except (LogtoConfigError, ValueError) as exc:
        sys.exit(f"{exc}\n{common.SETUP_HINT}")
    application = create_app(config)
    url = config.base_url or common.public_url(host, port)
    from waitress import create_server

    common.configure_logging()
    try:
        server = create_server(application, host=host, port=port)
    except OSError as exc:
        sys.exit(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    # waitress stops serving on KeyboardInterrupt (Ctrl-C) and SystemExit (SIGTERM, see below).
    signal.signal(signal.SIGTERM, common.exit_quietly)
    print(f"Logto + {FRAMEWORK} example (waitress): open {url}", flush=True)
    try:
        server.run()
    finally:
        server.close()


if __name__ == "__main__":
    main()
