"""Errors raised inside the protocol flows; the middleware turns each into a response."""

from __future__ import annotations

__all__ = ["AccessTokenError", "LogtoConfigError", "LogtoError", "OAuthError", "ProviderError",
           "ProviderUnavailable", "StoreUnavailable", "TokenValidationError"]


class LogtoError(Exception):
    """Base class of the package's errors."""


class LogtoConfigError(ValueError):
    """A missing or invalid setting; the message names the setting and its environment variable."""


class ProviderUnavailable(LogtoError):
    """The provider could not be reached, timed out, or answered 5xx: try again later."""


class ProviderError(LogtoError):
    """The provider answered something that is not valid OpenID Connect."""


class OAuthError(LogtoError):
    """The provider answered with an OAuth error code such as `invalid_grant`."""

    def __init__(self, error: str, description: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.description = description


class TokenValidationError(LogtoError):
    """A token failed verification (signature, issuer, audience, expiry, nonce...)."""


class AccessTokenError(LogtoError):
    """No access token can be had: not signed in, the resource was not granted, or the grant failed.
    `transient` is True when the provider or the session store could not be reached: try again
    later rather than sign in again."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class StoreUnavailable(LogtoError):
    """The session store (e.g. Redis) could not be reached: answer 503 and lose nothing."""
