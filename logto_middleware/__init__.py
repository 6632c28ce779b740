"""Logto (OpenID Connect) sign-in for any ASGI or WSGI app.

    from logto_middleware import LogtoConfig, LogtoASGIMiddleware, LogtoWSGIMiddleware

    app = LogtoASGIMiddleware(app, LogtoConfig.from_env())
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import LogtoConfig, LogtoConfigError
from .errors import (
    AccessTokenError,
    LogtoError,
    OAuthError,
    ProviderError,
    ProviderUnavailable,
    StoreUnavailable,
    TokenValidationError,
)
from .helpers import signin_url, signout_form

if TYPE_CHECKING:
    from .asgi import LogtoASGIMiddleware
    from .bearer import (
        AccessTokenUser,
        BearerASGIMiddleware,
        BearerAuthBackend,
        BearerCredentials,
        BearerError,
        BearerValidator,
        BearerWSGIMiddleware,
        requires_bearer,
    )
    from .hooks import LogtoHooks
    from .session import (
        AnonymousAuth,
        AnonymousUser,
        AsyncSession,
        AuthSource,
        LogtoUser,
        Session,
        SessionlessAuth,
        SyncSession,
    )
    from .stores import CookieStore, MemoryStore, RedisStore, SessionStore
    from .wsgi import LogtoWSGIMiddleware

__version__ = "0.1.0"

# The rest of the public API, imported on first use (PEP 562): an app pays for the parts it
# uses (the HTTP client, JOSE, a Redis client), not for all of them when it imports the package.
_LAZY = {
    "LogtoASGIMiddleware": "asgi",
    "LogtoWSGIMiddleware": "wsgi",
    "LogtoHooks": "hooks",
    **dict.fromkeys(("AccessTokenUser", "BearerASGIMiddleware", "BearerAuthBackend", "BearerCredentials",
                     "BearerError", "BearerValidator", "BearerWSGIMiddleware", "requires_bearer"), "bearer"),
    **dict.fromkeys(("AnonymousAuth", "AnonymousUser", "AsyncSession", "AuthSource", "LogtoUser", "Session",
                     "SessionlessAuth", "SyncSession"), "session"),
    **dict.fromkeys(("CookieStore", "MemoryStore", "RedisStore", "SessionStore"), "stores"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # found once: later reads are plain attribute lookups
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AccessTokenError",
    "AccessTokenUser",
    "AnonymousAuth",
    "AnonymousUser",
    "AsyncSession",
    "AuthSource",
    "BearerASGIMiddleware",
    "BearerAuthBackend",
    "BearerCredentials",
    "BearerError",
    "BearerValidator",
    "BearerWSGIMiddleware",
    "CookieStore",
    "LogtoASGIMiddleware",
    "LogtoConfig",
    "LogtoConfigError",
    "LogtoError",
    "LogtoHooks",
    "LogtoUser",
    "LogtoWSGIMiddleware",
    "MemoryStore",
    "OAuthError",
    "ProviderError",
    "ProviderUnavailable",
    "RedisStore",
    "Session",
    "SessionStore",
    "SessionlessAuth",
    "StoreUnavailable",
    "SyncSession",
    "TokenValidationError",
    "requires_bearer",
    "signin_url",
    "signout_form",
]
