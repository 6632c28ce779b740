"""Logto sign-in the Django way.

    INSTALLED_APPS += ["logto_middleware.django"]            # with django.contrib.auth: the User link
    MIDDLEWARE += ["logto_middleware.django.LogtoMiddleware"]  # after AuthenticationMiddleware
    LOGIN_URL = "/api/auth/signin"
    LOGTO = {"issuer": ..., "client_id": ..., ...}              # or the AUTH_ environment variables

Importing this package needs Django; the rest of the package does not.
"""

from .middleware import LogtoMiddleware
from .session import DjangoSession

__all__ = ["DjangoSession", "LogtoMiddleware"]
