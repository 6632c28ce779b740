"""Logto (OpenID Connect) sign-in for any ASGI or WSGI app.

    from logto_middleware import LogtoConfig, LogtoASGIMiddleware, LogtoWSGIMiddleware

    app = LogtoASGIMiddleware(app, LogtoConfig.from_env())
"""

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

__version__ = "0.1.0"
