"""Django settings of the Django tests (configured by conftest.py, never by DJANGO_SETTINGS_MODULE)."""

from __future__ import annotations

SECRET = "test-secret-0123456789-abcdefghijklmnop"

WITH_AUTH_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions",
                  "logto_middleware.django", "rest_framework"]
WITH_AUTH_MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware",
                        "django.contrib.auth.middleware.AuthenticationMiddleware",
                        "logto_middleware.django.LogtoMiddleware"]
WITHOUT_AUTH_APPS: list[str] = []
WITHOUT_AUTH_MIDDLEWARE = ["logto_middleware.django.LogtoMiddleware"]

BASE = {
    "DEBUG": False,
    "SECRET_KEY": "django-test-key-not-secret",
    "ALLOWED_HOSTS": ["localhost", "testserver"],
    "ROOT_URLCONF": "django_integration.urls",
    "INSTALLED_APPS": WITH_AUTH_APPS,
    "MIDDLEWARE": WITH_AUTH_MIDDLEWARE,
    "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    "AUTHENTICATION_BACKENDS": ["logto_middleware.django.backends.LogtoBackend"],
    "LOGIN_URL": "/api/auth/signin",
    "USE_TZ": True,
    "REST_FRAMEWORK": {"UNAUTHENTICATED_USER": None},
}
