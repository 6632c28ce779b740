"""Records kept by `FakeLogto`: provider sessions, grants, codes and tokens."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


def random_token() -> str:
    """An opaque 43-character token, like Logto's."""
    return secrets.token_urlsafe(32)


@dataclass
class Session:
    """A signed-in user at the provider (the cookie-backed ``sid``)."""

    sid: str
    user: str
    auth_time: int
    active: bool = True


@dataclass
class Grant:
    """What one authorization produced; revoking it kills all of its tokens."""

    grant_id: str
    user: str
    client_id: str
    scopes: tuple[str, ...]
    sid: str
    auth_time: int
    revoked: bool = False
    resources: tuple[str, ...] = ()
    """The API resource indicators (RFC 8707 ``resource``) of the authorization request."""
    resource_scopes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Per granted resource, the requested scopes that resource defined at authorization."""

    @property
    def offline(self) -> bool:
        """Whether refresh tokens were granted (they survive sign-out)."""
        return "offline_access" in self.scopes

    @property
    def all_scopes(self) -> tuple[str, ...]:
        """OIDC and resource scopes, like oidc-provider's refresh-token ``scope``."""
        extra = (s for scopes in self.resource_scopes.values() for s in scopes)
        return tuple(dict.fromkeys((*self.scopes, *extra)))


@dataclass
class AuthCode:
    """A single-use authorization code."""

    grant_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    expires_at: float
    used: bool = False


@dataclass
class RefreshToken:
    """A refresh token; ``consumed`` once rotated away."""

    grant_id: str
    issued_at: float
    expires_at: float
    consumed: bool = False

    def aged(self, now: float, fraction: float) -> bool:
        """Whether at least ``fraction`` of the token's lifetime has passed."""
        return now - self.issued_at >= fraction * (self.expires_at - self.issued_at)


@dataclass
class AccessToken:
    """An opaque access token for the userinfo endpoint."""

    grant_id: str
    scopes: tuple[str, ...]
    expires_at: float
