"""Logto (OpenID Connect) sign-in for any ASGI or WSGI app.

    from logto_middleware import LogtoConfig, LogtoASGIMiddleware, LogtoWSGIMiddleware

    app = LogtoASGIMiddleware(app, LogtoConfig.from_env())
"""

from .asgi import LogtoASGIMiddleware
from .config import LogtoConfig, LogtoConfigError
from .errors import (
    LogtoError,
    OAuthError,
    ProviderError,
    ProviderUnavailable,
    StoreUnavailable,
    TokenValidationError,
)
from .session import AnonymousUser, LogtoUser, Session
from .stores import CookieStore, MemoryStore, RedisStore, SessionStore
from .wsgi import LogtoWSGIMiddleware

__all__ = [
    "AnonymousUser",
    "CookieStore",
    "LogtoASGIMiddleware",
    "LogtoConfig",
    "LogtoConfigError",
    "LogtoError",
    "LogtoUser",
    "LogtoWSGIMiddleware",
    "MemoryStore",
    "OAuthError",
    "ProviderError",
    "ProviderUnavailable",
    "RedisStore",
    "Session",
    "SessionStore",
    "StoreUnavailable",
    "TokenValidationError",
]

__version__ = "0.1.0"
