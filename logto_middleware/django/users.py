"""`request.user` with `django.contrib.auth`: the `User` linked to the Logto user, resolved on
first use, as Django's `AuthenticationMiddleware` does."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_backends
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from ..session import AnonymousUser as LogtoAnonymousUser
from ..session import LogtoUser
from .backends import LogtoBackend

__all__ = ["attach_django_user", "django_user"]

log = logging.getLogger("logto_middleware")


def _backend() -> tuple[LogtoBackend, str]:
    for backend in get_backends():
        if isinstance(backend, LogtoBackend):
            return backend, f"{type(backend).__module__}.{type(backend).__qualname__}"
    return LogtoBackend(), "logto_middleware.django.backends.LogtoBackend"


def django_user(request: HttpRequest, logto_user: LogtoUser | LogtoAnonymousUser, issuer: str) -> Any:
    """The linked `User` of a signed-in Logto user (created or updated first), else Django's
    `AnonymousUser`. The app's `create_user`/`update_user` run under the fail-closed rule: when
    they raise, the request is anonymous (logged), never a 500."""
    cached = getattr(request, "_logto_django_user", None)
    if cached is not None:
        return cached
    user: Any = AnonymousUser()
    if isinstance(logto_user, LogtoUser):
        backend, path = _backend()
        try:
            found = backend.authenticate(request, logto_user=logto_user, issuer=issuer)
        except Exception:
            log.exception("the Logto authentication backend raised on %s %s; the request is anonymous",
                          request.method, request.path)
            found = None
        if found is not None:
            found.backend = path
            user = found
    request._logto_django_user = user
    return user


def attach_django_user(request: HttpRequest, logto_user: LogtoUser | LogtoAnonymousUser, issuer: str) -> None:
    """Set `request.user` and `request.auser` for a Logto session; without one, leave the user of
    Django's own `AuthenticationMiddleware` (a password sign-in to the admin) if it set one."""
    if not isinstance(logto_user, LogtoUser) and hasattr(request, "user"):
        return
    request.user = SimpleLazyObject(lambda: django_user(request, logto_user, issuer))

    async def auser() -> Any:
        return await sync_to_async(django_user)(request, logto_user, issuer)

    request.auser = auser
