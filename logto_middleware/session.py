"""What a request sees: the user (Starlette's `BaseUser` protocol, without Starlette) and the session."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, ClassVar, Literal, Protocol

from ._auth import AuthCredentials, BaseUser
from ._protocol.freshness import auth_time_of
from .errors import AccessTokenError
from .flow import Flow

__all__ = ["AnonymousAuth", "AnonymousUser", "AsyncSession", "AuthSource", "LogtoUser", "ProfileMapper",
           "Session", "SessionData", "SessionlessAuth", "SyncSession", "session_claims"]

AuthSource = Literal["session", "bearer"]
"""What authenticated a request's user (`user.source`): a signed-in session (its cookie, or an
Auth.js session token) or an access token sent as `Authorization: Bearer`."""

ProfileMapper = Callable[[Mapping[str, Any]], Mapping[str, Any]]
"""The app's mapping from the ID token claims to the user's `id`, `name`, `email` and `image`
(`LogtoConfig.profile`)."""

_TRANSIENT_CLAIMS = ("nonce", "at_hash", "c_hash")
_EXTRA_OBJECTS = ("tokens", "fields")
_NO_FIELDS: Mapping[str, Any] = MappingProxyType({})
# `json.dumps(..., separators=...)` builds an encoder on every call; this one is built once.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


class SessionTokens(Protocol):
    """What a `Session` gets its tokens through: its request's session state (the middleware's),
    whose token flows its middleware's driver runs."""

    @property
    def data(self) -> SessionData | None: ...

    def access_token(self, resource: str | None = None, organization_id: str | None = None) -> Flow[str]: ...

    def token_claims(self, resource: str | None = None,
                     organization_id: str | None = None) -> Flow[dict[str, Any]]: ...

    def user_info(self) -> Flow[dict[str, Any]]: ...

    def authenticated_within(self, seconds: int) -> bool: ...


class LogtoUser(BaseUser):
    """A signed-in user, mapped from the ID token claims as Auth.js's Logto provider does."""

    __slots__ = ("claims", "email", "fields", "id", "image", "name")

    source: ClassVar[AuthSource] = "session"
    """Where the user comes from: always "session" (an `AccessTokenUser` says "bearer")."""

    def __init__(self, claims: Mapping[str, Any], profile: ProfileMapper | None = None,
                 fields: Mapping[str, Any] = _NO_FIELDS) -> None:
        self.claims: dict[str, Any] = claims if isinstance(claims, dict) else dict(claims)
        # The session's fields (`LogtoHooks.session_data`), read-only: the user of a decoded
        # cookie serves every request that carries the cookie.
        self.fields: Mapping[str, Any] = fields
        fields = profile(self.claims) if profile else _default_profile(self.claims)
        if not isinstance(fields, Mapping):
            raise TypeError(f"the profile mapper answered {type(fields).__name__}, not a mapping")
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
    def auth_time(self) -> int | None:
        """When the user last signed in at Logto (the ID token's `auth_time`, seconds since the
        epoch; a refresh keeps the sign-in's); None when the provider did not say."""
        return auth_time_of(self.claims)

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
    fields: Mapping[str, Any] = _NO_FIELDS
    auth_time: int | None = None
    source: AuthSource | None = None

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


class SessionlessAuth(AuthCredentials):
    """`request.auth` of an ASGI request without a session: the session's token methods answer
    `AccessTokenError`, so code written for a signed-in session fails the documented way."""

    _no_session = "not signed in"

    async def get_access_token(self, resource: str | None = None, organization_id: str | None = None) -> str:
        raise AccessTokenError(self._no_session)

    async def get_access_token_claims(self, resource: str | None = None) -> dict[str, Any]:
        raise AccessTokenError(self._no_session)

    async def get_organization_token_claims(self, organization_id: str) -> dict[str, Any]:
        raise AccessTokenError(self._no_session)

    async def fetch_user_info(self) -> dict[str, Any]:
        raise AccessTokenError(self._no_session)


class AnonymousAuth(SessionlessAuth):
    """`request.auth` of an anonymous ASGI request: no scopes, no session."""

    def __init__(self, base_path: str = "/api/auth") -> None:
        super().__init__()
        self.base_path = base_path  # where the middleware's sign-in is, for redirects to it


def _default_profile(claims: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": claims.get("sub"), "name": claims.get("name") or claims.get("username"),
            "email": claims.get("email"), "image": claims.get("picture")}


def session_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The ID token claims kept in a session (request-specific ones such as the nonce dropped)."""
    return {k: v for k, v in claims.items() if k not in _TRANSIENT_CLAIMS}


def id_token_session_claims(id_token: str) -> dict[str, Any] | None:
    """The session claims carried by an ID token, *without* verifying it (for tokens that were
    verified when the session was made, or for tests)."""
    return _payload(id_token)


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
    # True when `claims` are the ID token's own (then only the token is stored, not both).
    claims_from_id_token: bool = field(default=True, compare=False)

    def to_json(self) -> bytes:
        data: dict[str, Any] = {"expires_at": self.expires_at, "updated_at": self.updated_at}
        if self.id_token is None or not self.claims_from_id_token:
            data["claims"] = self.claims
        for name in ("id_token", "access_token", "access_token_expires_at", "refresh_token", "scope", "error"):
            value = getattr(self, name)
            if value is not None and value != "":
                data[name] = value
        if self.extra:
            data["extra"] = self.extra
        return _COMPACT_JSON.encode(data).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> SessionData | None:
        """Parse stored JSON; None when it is not a well-formed session."""
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        own_claims = "claims" in data
        if not own_claims and isinstance(data.get("id_token"), str):
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
        extra = data.get("extra", {})
        # The members the package reads (`resource_token`, the Auth.js codec) are objects too.
        if not isinstance(extra, dict) or not all(isinstance(extra.get(k, {}), dict) for k in _EXTRA_OBJECTS):
            return None
        try:
            return cls(**data, claims_from_id_token=not own_claims)
        except TypeError:
            return None

    @property
    def fields(self) -> Mapping[str, Any]:
        """The app's fields of the session (`LogtoHooks.session_data`; with the Auth.js cookie,
        the members an Auth.js app put in its token), read-only."""
        fields = self.extra.get("fields")
        return MappingProxyType(fields) if fields else _NO_FIELDS

    def with_fields(self, fields: Mapping[str, Any]) -> SessionData:
        return replace(self, extra={**self.extra, "fields": dict(fields)})

    def user(self, profile: ProfileMapper | None = None) -> LogtoUser:
        """The user of this session, mapped from its claims once: the session is immutable, and
        a decoded cookie's session serves every request that carries the cookie."""
        # Kept in the instance's __dict__ as `functools.cached_property` does (a frozen
        # dataclass refuses attributes set the usual way); not a field: not compared or stored.
        mapped: tuple[ProfileMapper | None, LogtoUser] | None = self.__dict__.get("_user")
        if mapped is None or mapped[0] is not profile:
            mapped = self.__dict__["_user"] = (profile, LogtoUser(self.claims, profile, self.fields))
        return mapped[1]

    def with_changes(self, **changes: Any) -> SessionData:
        return replace(self, **changes)

    def resource_token(self, audience: str) -> tuple[str, int, str] | None:
        """The cached access token for an API resource or organization: (token, expiry, scope)."""
        entry = self.extra.get("tokens", {}).get(audience)
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
            return None
        expires_at = entry.get("expires_at")
        return entry["token"], expires_at if isinstance(expires_at, int) else 0, str(entry.get("scope", ""))

    def with_resource_token(self, audience: str, token: str, expires_at: int, scope: str) -> SessionData:
        tokens = dict(self.extra.get("tokens", {}))
        tokens[audience] = {"token": token, "expires_at": expires_at, "scope": scope}
        return replace(self, extra={**self.extra, "tokens": tokens})

    def without_resource_token(self, audience: str) -> SessionData:
        tokens = {key: entry for key, entry in dict(self.extra.get("tokens", {})).items() if key != audience}
        return replace(self, extra={**self.extra, "tokens": tokens})


class Session:
    """The signed-in session of a request. `scopes` holds "authenticated" and the granted OAuth
    scopes, so Starlette's `requires(...)` works with it. The middlewares hand out the flavour
    of their world: `AsyncSession` (ASGI, `scope["auth"]`) or `SyncSession` (WSGI,
    `environ["logto.session"]`); both get tokens through one implementation."""

    __slots__ = ("_data_", "_tokens", "base_path", "user")

    def __init__(self, data: SessionData, profile: ProfileMapper | None = None,
                 tokens: SessionTokens | None = None, user: LogtoUser | None = None,
                 base_path: str = "/api/auth") -> None:
        self._tokens = tokens
        self.user = user if user is not None else LogtoUser(data.claims, profile)
        self._data_ = data
        self.base_path = base_path  # where the middleware's sign-in is, for redirects to it

    @property
    def data(self) -> SessionData:
        state_data = self._tokens.data if self._tokens is not None else None
        return state_data if state_data is not None else self._data_

    @property
    def access_token(self) -> str | None:
        return self.data.access_token

    @property
    def access_token_expires_at(self) -> int | None:
        """Expiry of the access token, in seconds since the epoch."""
        return self.data.access_token_expires_at

    @property
    def id_token_claims(self) -> dict[str, Any]:
        return self.data.claims

    @property
    def expires_at(self) -> int:
        """Expiry of the session, in seconds since the epoch."""
        return self.data.expires_at

    @property
    def scopes(self) -> list[str]:
        return ["authenticated", *self.data.scope.split()]

    @property
    def error(self) -> str | None:
        return self.data.error

    @property
    def fields(self) -> Mapping[str, Any]:
        """The app's fields of the session (`LogtoHooks.session_data`), read-only."""
        return self.data.fields

    @property
    def auth_time(self) -> int | None:
        """When the user last signed in at Logto (the ID token's `auth_time`, seconds since the
        epoch; a refresh keeps the sign-in's); None when the provider did not say."""
        return auth_time_of(self.data.claims)

    def authenticated_within(self, seconds: int) -> bool:
        """Whether the user signed in at Logto at most `seconds` ago (the configured clock skew
        allowed); False when the sign-in time is unknown. Ask for a new sign-in with
        `signin_url(here, max_age=seconds)`."""
        return self._bound().authenticated_within(seconds)

    def _bound(self) -> SessionTokens:
        if self._tokens is None:
            raise RuntimeError("this session is not bound to a request")
        return self._tokens

    def __repr__(self) -> str:
        return f"{type(self).__name__}(user={self.user!r}, expires_at={self.expires_at})"


class AsyncSession(Session):
    """The session on ASGI requests: token methods are coroutines."""

    __slots__ = ("_run",)

    def __init__(self, data: SessionData, profile: ProfileMapper | None, tokens: SessionTokens,
                 run: Callable[[Flow[Any]], Awaitable[Any]], user: LogtoUser | None = None,
                 base_path: str = "/api/auth") -> None:
        Session.__init__(self, data, profile, tokens, user, base_path)
        self._run = run

    async def get_access_token(self, resource: str | None = None, organization_id: str | None = None) -> str:
        """A valid access token (the session's own, or for an API resource or organization),
        refreshed when needed; raises `AccessTokenError`."""
        return str(await self._run(self._bound().access_token(resource, organization_id)))

    async def get_access_token_claims(self, resource: str | None = None) -> dict[str, Any]:
        """The claims of the access token for `resource`, decoded without verification."""
        return dict(await self._run(self._bound().token_claims(resource)))

    async def get_organization_token_claims(self, organization_id: str) -> dict[str, Any]:
        """The claims of the organization token, decoded without verification."""
        return dict(await self._run(self._bound().token_claims(None, organization_id)))

    async def fetch_user_info(self) -> dict[str, Any]:
        """The userinfo endpoint's claims (custom_data, identities... when granted)."""
        return dict(await self._run(self._bound().user_info()))


class SyncSession(Session):
    """The session on WSGI requests: token methods are plain calls."""

    __slots__ = ("_run",)

    def __init__(self, data: SessionData, profile: ProfileMapper | None, tokens: SessionTokens,
                 run: Callable[[Flow[Any]], Any], user: LogtoUser | None = None) -> None:
        Session.__init__(self, data, profile, tokens, user)
        self._run = run

    def get_access_token(self, resource: str | None = None, organization_id: str | None = None) -> str:
        """A valid access token (the session's own, or for an API resource or organization),
        refreshed when needed; raises `AccessTokenError`."""
        return str(self._run(self._bound().access_token(resource, organization_id)))

    def get_access_token_claims(self, resource: str | None = None) -> dict[str, Any]:
        """The claims of the access token for `resource`, decoded without verification."""
        return dict(self._run(self._bound().token_claims(resource)))

    def get_organization_token_claims(self, organization_id: str) -> dict[str, Any]:
        """The claims of the organization token, decoded without verification."""
        return dict(self._run(self._bound().token_claims(None, organization_id)))

    def fetch_user_info(self) -> dict[str, Any]:
        """The userinfo endpoint's claims (custom_data, identities... when granted)."""
        return dict(self._run(self._bound().user_info()))
