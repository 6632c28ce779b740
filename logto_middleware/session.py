"""What a request sees: the user (Starlette's `BaseUser` protocol) and the session."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from starlette.authentication import BaseUser

from .config import ProfileMapper

__all__ = ["AnonymousUser", "LogtoUser", "Session", "SessionData", "session_claims"]

_TRANSIENT_CLAIMS = ("nonce", "at_hash", "c_hash")


class LogtoUser(BaseUser):
    """A signed-in user, mapped from the ID token claims as Auth.js's Logto provider does."""

    __slots__ = ("claims", "email", "id", "image", "name")

    def __init__(self, claims: Mapping[str, Any], profile: ProfileMapper | None = None) -> None:
        self.claims: dict[str, Any] = dict(claims)
        fields = profile(self.claims) if profile else _default_profile(self.claims)
        self.id: str = str(fields.get("id") or self.claims.get("sub") or "")
        self.name: str | None = _text(fields.get("name"))
        self.email: str | None = _text(fields.get("email"))
        self.image: str | None = _text(fields.get("image"))

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.name or self.email or self.id

    @property
    def identity(self) -> str:
        return self.id

    def to_dict(self) -> dict[str, str | None]:
        return {"id": self.id, "name": self.name, "email": self.email, "image": self.image}

    def __repr__(self) -> str:
        return f"LogtoUser(id={self.id!r}, name={self.name!r})"


class AnonymousUser(BaseUser):
    """The user of a request without a session; has the same attributes, all empty."""

    id: str | None = None
    name: str | None = None
    email: str | None = None
    image: str | None = None
    claims: dict[str, Any] = {}  # noqa: RUF012 - read-only by convention, like Starlette's

    @property
    def is_authenticated(self) -> bool:
        return False

    @property
    def display_name(self) -> str:
        return ""

    @property
    def identity(self) -> str:
        return ""

    def __repr__(self) -> str:
        return "AnonymousUser()"


def _default_profile(claims: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": claims.get("sub"), "name": claims.get("name") or claims.get("username"),
            "email": claims.get("email"), "image": claims.get("picture")}


def session_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The ID token claims kept in a session (request-specific ones such as the nonce dropped)."""
    return {k: v for k, v in claims.items() if k not in _TRANSIENT_CLAIMS}


def _payload(id_token: str) -> dict[str, Any] | None:
    # Only called on data that was authenticated (decrypted) and verified when stored.
    try:
        segment = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (IndexError, ValueError):
        return None
    return session_claims(claims) if isinstance(claims, dict) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class SessionData:
    """The persisted state of a session. Immutable: changes make a copy with `replace`."""

    claims: dict[str, Any]
    expires_at: int
    updated_at: int
    id_token: str | None = None
    access_token: str | None = None
    access_token_expires_at: int | None = None
    refresh_token: str | None = None
    scope: str = ""
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        data = {k: v for k, v in asdict(self).items() if v not in (None, "", {})}
        if self.id_token is not None:
            # The claims are the ID token's: storing both would double the cookie.
            data.pop("claims", None)
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> SessionData | None:
        """Parse stored JSON; None when it is not a well-formed session."""
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        if "claims" not in data and isinstance(data.get("id_token"), str):
            data["claims"] = _payload(data["id_token"])
        claims = data.get("claims")
        if not isinstance(claims, dict) or not isinstance(claims.get("sub"), str):
            return None
        if not all(isinstance(data.get(k), int) for k in ("expires_at", "updated_at")):
            return None
        for key in ("id_token", "access_token", "refresh_token", "scope", "error"):
            if not isinstance(data.get(key, ""), str):
                return None
        if not isinstance(data.get("access_token_expires_at", 0), int):
            return None
        if not isinstance(data.get("extra", {}), dict):
            return None
        try:
            return cls(**data)
        except TypeError:
            return None

    def with_changes(self, **changes: Any) -> SessionData:
        return replace(self, **changes)


class Session:
    """The signed-in session of a request (`scope["auth"]` on ASGI, `environ["logto.session"]`
    on WSGI). `scopes` holds "authenticated" and the granted OAuth scopes, so Starlette's
    `requires(...)` works with it."""

    __slots__ = ("_data", "user")

    def __init__(self, data: SessionData, profile: ProfileMapper | None = None) -> None:
        self._data = data
        self.user = LogtoUser(data.claims, profile)

    @property
    def data(self) -> SessionData:
        return self._data

    @property
    def access_token(self) -> str | None:
        return self._data.access_token

    @property
    def access_token_expires_at(self) -> int | None:
        """Expiry of the access token, in seconds since the epoch."""
        return self._data.access_token_expires_at

    @property
    def id_token_claims(self) -> dict[str, Any]:
        return self._data.claims

    @property
    def expires_at(self) -> int:
        """Expiry of the session, in seconds since the epoch."""
        return self._data.expires_at

    @property
    def scopes(self) -> list[str]:
        return ["authenticated", *self._data.scope.split()]

    @property
    def error(self) -> str | None:
        return self._data.error

    def __repr__(self) -> str:
        return f"Session(user={self.user!r}, expires_at={self.expires_at})"
