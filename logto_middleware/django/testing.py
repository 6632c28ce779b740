"""Signing a Django test client in, with no provider at all (like `Client.force_login`).

    from logto_middleware.django.testing import sign_in
    sign_in(client, claims={"sub": "user-1", "email": "a@example.com"})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..testing import make_session_cookie
from .conf import options_from_settings

__all__ = ["sign_in"]


def sign_in(client: Any, claims: Mapping[str, Any] | None = None, **options: Any) -> None:
    """Put a signed-in session cookie (made with the project's `LOGTO` settings) in the cookie
    jar of `client` (Django's `Client` or `AsyncClient`). `options` go to `make_session_cookie`
    (access_token, refresh_token, expires_in, scope, secure, clock...)."""
    settings = options_from_settings()
    if "clock" in settings.runtime:  # the middleware's own clock, so the session is fresh for it
        options.setdefault("clock", settings.runtime["clock"])
    header = make_session_cookie(settings.config, claims, **options)
    for pair in header.split("; "):
        name, _, value = pair.partition("=")
        client.cookies[name] = value
