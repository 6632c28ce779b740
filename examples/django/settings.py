"""Settings of the Django example: the smallest project with Logto sign-in and Django users.

The Logto settings come from the environment (or `.env`): AUTH_LOGTO_ISSUER, AUTH_LOGTO_ID,
AUTH_LOGTO_SECRET, AUTH_SECRET, and optionally AUTH_URL (see examples/common.py).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

sys.path.append(str(Path(__file__).resolve().parents[1]))  # examples/, for the shared pages
import common

LOGTO = common.load_config()  # LogtoConfig.from_env() plus the examples' own settings

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "logto_middleware.django",  # the User <-> Logto link (LogtoIdentity)
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "logto_middleware.django.LogtoMiddleware",  # after AuthenticationMiddleware
]
AUTHENTICATION_BACKENDS = ["logto_middleware.django.backends.LogtoBackend"]
LOGIN_URL = "/api/auth/signin"  # login_required sends ?next=, which the sign-in honours

ROOT_URLCONF = "urls"
DEBUG = False
# An example: derived from AUTH_SECRET; a real project keeps a key of its own.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or hashlib.sha256(
    ("django-example:" + LOGTO.secrets[0]).encode()).hexdigest()
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
if LOGTO.base_url:
    ALLOWED_HOSTS.append(urlsplit(LOGTO.base_url).hostname or "localhost")
DATABASES = {"default": {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": os.environ.get("DJANGO_DATABASE") or str(Path(tempfile.gettempdir()) / "logto-django-example.sqlite3"),
}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
