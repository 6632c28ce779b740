"""The Django example under an ASGI server (the middleware runs async there):

    python examples/django/app.py --migrate   # once: the tables
    uvicorn --app-dir examples/django asgi:application
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # settings/urls, and examples/ for `common`
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()
