"""`make_session_cookie`: a signed-in session for an app's own tests, with no provider at all."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from .._sessions.authjs import AUTHJS_SESSION_COOKIE, AuthJsCookieStore
from .._sessions.cookies import write_chunked
from .._sessions.manager import SESSION_COOKIE
from ..config import LogtoConfig
from ..flow import run_without_io
from ..session import SessionData, id_token_session_claims
from ..stores import CookieStore

__all__ = ["make_session_cookie"]

DEFAULT_CLAIMS: dict[str, Any] = {
    "sub": "test-user", "name": "Test User", "username": "test", "email": "test@example.com",
    "picture": "https://example.com/avatar/test.png",
}


def make_session_cookie(
    config: LogtoConfig,
    claims: Mapping[str, Any] | None = None,
    *,
    access_token: str | None = "test-access-token",  # noqa: S107 - a test value, not a secret
    refresh_token: str | None = None,
    expires_in: int = 3600,
    scope: str | None = None,
    id_token: str | None = None,
    secure: bool = False,
    clock: Callable[[], float] = time.time,
    fields: Mapping[str, Any] | None = None,
) -> str:
    """The `Cookie` header value of a signed-in session, sealed with `config.secret`, like
    Django's `force_login`. `expires_in` is the access token's lifetime; the session itself
    lasts `config.session_max_age`. Use `secure=True` for an app served over https. With
    `session_format="authjs"` it is Auth.js's session cookie. `fields` are the session's fields,
    as `LogtoHooks.session_data` would have answered (not checked: the hooks do not run)."""
    now = int(clock())
    merged = {**DEFAULT_CLAIMS, **(claims or {})}
    data = SessionData(
        claims=merged, expires_at=now + config.session_max_age, updated_at=now,
        id_token=id_token, access_token=access_token,
        access_token_expires_at=now + expires_in if access_token else None,
        refresh_token=refresh_token, scope=scope if scope is not None else config.scope,
        # The given claims are kept, whatever the ID token says; stored once when they agree.
        claims_from_id_token=id_token is not None and id_token_session_claims(id_token) == merged,
        extra={"fields": dict(fields)} if fields else {})
    # The name the middleware gives its session cookie: `__Host-` on https, but Auth.js's, which
    # keeps Auth.js's name (`__Secure-`), in the format the middleware reads (else the app's test
    # would run anonymous without a word).
    if config.session_format == "authjs":
        name = ("__Secure-" if secure else "") + AUTHJS_SESSION_COOKIE
        codec = AuthJsCookieStore(config.secrets, max_age=config.session_max_age, clock=clock)
        value = run_without_io(codec.save(data, None, name))
    else:
        name = ("__Host-" if secure else "") + SESSION_COOKIE
        value = run_without_io(CookieStore(config.secrets).save(data, None, name))
    set_cookies = write_chunked(name, value, max_age=config.session_max_age, secure=secure)
    return "; ".join(header.split(";", 1)[0] for header in set_cookies)
