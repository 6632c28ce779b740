"""Protecting an API with Logto access tokens (`Authorization: Bearer <JWT>`, RFC 6750).

`BearerValidator` verifies a token: signature from the provider's cached JWKS (ES384 by
default), `iss`, `aud` (the API resource indicator, or `urn:logto:organization:<id>`),
`exp`/`nbf`, the required scopes and, where the endpoint serves one organization, that the
token is for that organization. Use it as a Starlette `AuthenticationBackend`
(`BearerAuthBackend`), as ASGI or WSGI middleware, or per endpoint with `requires_bearer`.

Logto says which organization a token is for in two ways: an organization token's `aud` is
`urn:logto:organization:<id>` (it has no `organization_id` claim), and a token for an
organization-level API resource has the API's `aud` and an `organization_id` claim.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, MutableMapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from cachetools import LRUCache

from ._auth import BaseUser
from ._protocol.provider import ProviderCache
from ._protocol.tokens import check_standard_claims, decode_unverified, verify_signed_jwt
from .errors import LogtoError, ProviderError, ProviderUnavailable, TokenValidationError
from .flow import DEFAULT_DEADLINE, AsyncDriver, Flow, SyncDriver
from .session import AnonymousAuth, AnonymousUser, AuthSource, SessionlessAuth

# Starlette is imported where a Starlette or FastAPI app calls us (it is their dependency, not
# ours): a WSGI or Django app protecting its API never imports it.
# httpx likewise: the drivers import it when they make their clients, on the first key fetch.
if TYPE_CHECKING:
    import httpx
    from starlette import authentication as starlette_auth
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import Response

    _Backend = starlette_auth.AuthenticationBackend
else:
    _Backend = object

__all__ = ["AccessTokenUser", "BearerASGIMiddleware", "BearerAuthBackend", "BearerCredentials", "BearerError",
           "BearerValidator", "BearerWSGIMiddleware", "requires_bearer"]


F = TypeVar("F", bound=Callable[..., Any])
ORGANIZATION_PREFIX = "urn:logto:organization:"

_OrganizationOf = str | Callable[[Any], str | None]
"""The organization an endpoint serves: its id, or a callable that finds it in the request
(for example `lambda request: request.path_params["org_id"]`)."""

log = logging.getLogger("logto_middleware")


class BearerError(LogtoError):
    """A refused bearer token, with its RFC 6750 status and `WWW-Authenticate` challenge.
    `BearerAuthBackend` raises it as a Starlette `AuthenticationError` too."""

    def __init__(self, status: int, error: str | None, description: str, scopes: Iterable[str] = ()) -> None:
        super().__init__(description)
        self.status, self.error, self.description, self.scopes = status, error, description, tuple(scopes)

    @property
    def challenge(self) -> str:
        parts = ['Bearer realm="api"']
        if self.error:  # RFC 6750 3.1: no error code when the request had no token at all
            parts.append(f'error="{self.error}"')
            parts.append(f'error_description="{self.description}"')
        if self.scopes:
            parts.append(f'scope="{" ".join(self.scopes)}"')
        return ", ".join(parts)

    def body(self) -> bytes:
        return json.dumps({"error": self.error or "unauthorized", "error_description": self.description,
                           **({"scope": " ".join(self.scopes)} if self.scopes else {})}).encode()

    def headers(self) -> list[tuple[str, str]]:
        return [("content-type", "application/json"), ("www-authenticate", self.challenge),
                ("cache-control", "no-store")]


class AccessTokenUser(BaseUser):
    """The caller of an API request, from a verified access token. `organization_id` is the
    organization the token is for (from `aud` or the `organization_id` claim; None when the
    token names none, or several). It has a `LogtoUser`'s attributes (`name`, `email` and
    `image` are None: an access token does not carry the profile) and `source` "bearer"."""

    source: ClassVar[AuthSource] = "bearer"
    name: str | None = None
    email: str | None = None
    image: str | None = None
    fields: Mapping[str, Any] = MappingProxyType({})  # no session, so none of the app's fields
    auth_time: int | None = None  # an access token does not say when the user signed in

    def __init__(self, claims: dict[str, Any]) -> None:
        self.claims = claims
        self.id: str = str(claims.get("sub", ""))
        self.client_id: str | None = claims.get("client_id")
        self._organization: tuple[str | None] | None = None  # found on first read, or set by the validator
        self.scopes: list[str] = str(claims.get("scope", "")).split()

    @property
    def organization_id(self) -> str | None:
        if self._organization is None:
            try:
                self._organization = (_token_organization(self.claims),)
            except TokenValidationError:
                self._organization = (None,)
        return self._organization[0]

    @organization_id.setter
    def organization_id(self, value: str | None) -> None:
        self._organization = (value,)

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.id

    @property
    def identity(self) -> str:
        return self.id

    def to_dict(self) -> dict[str, str | None]:
        return {"id": self.id, "name": None, "email": None, "image": None}

    def __repr__(self) -> str:
        return f"AccessTokenUser(id={self.id!r}, organization_id={self.organization_id!r}, scopes={self.scopes!r})"


class BearerCredentials(SessionlessAuth):
    """`request.auth` of a request authenticated by an access token: `scopes` are
    "authenticated" and the token's scopes (for Starlette's `@requires`); there is no session,
    so the session's token methods (`get_access_token`...) answer `AccessTokenError`."""

    _no_session = "a request authenticated by a bearer token has no session"

    def __init__(self, user: AccessTokenUser) -> None:
        super().__init__(["authenticated", *user.scopes])


def _audience_organizations(claims: Mapping[str, Any]) -> list[str]:
    """The organization ids the token's `aud` names (`urn:logto:organization:<id>`), once each."""
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]  # one string: Logto's (and the cheap) case
    found = [a.removeprefix(ORGANIZATION_PREFIX) for a in audiences
             if isinstance(a, str) and a.startswith(ORGANIZATION_PREFIX) and a != ORGANIZATION_PREFIX]
    return list(dict.fromkeys(found)) if len(found) > 1 else found


def _token_organization(claims: Mapping[str, Any], expected: str | None = None) -> str | None:
    """The organization a token's claims are accepted for: `expected` when the token is for it,
    else the only one it names (None: it names none). Raises `TokenValidationError` for a token
    naming several organizations where none is expected, or whose `organization_id` claim
    contradicts its `aud`; `BearerError` 403 for a token that is not for `expected`."""
    named = _audience_organizations(claims)
    if "organization_id" in claims:  # Logto adds it to organization-level API resource tokens
        claimed = claims["organization_id"]
        if not isinstance(claimed, str) or not claimed or (named and claimed not in named):
            raise TokenValidationError("token organization_id does not match its audience")
        named = named or [claimed]
    if expected is None:
        if len(named) > 1:
            raise TokenValidationError("token is for several organizations")
        return named[0] if named else None
    # Exact comparison: no normalisation of ids (case, percent-encoding) that could make two
    # organizations one.
    if expected not in named:
        raise _another_organization()
    return expected


def _another_organization() -> BearerError:
    # 403, not 401: the token is genuine and a new one for the same organization would not do
    # better; it grants nothing in this organization (RFC 6750 3.1, insufficient_scope).
    return BearerError(403, "insufficient_scope", "the token is not for this organization")


def _expected_organization(source: _OrganizationOf | None, request: Any) -> str | None:
    """The organization the endpoint serves for `request` (None: the endpoint names none).
    User code fails closed: a callable that raises, or finds no id, refuses the request."""
    if source is None or isinstance(source, str):
        return source
    try:
        found = source(request)
    except Exception as exc:  # the app's code: refuse the request, never a 500
        log.info("the organization of a bearer-protected request could not be read: %s", type(exc).__name__)
        found = None
    if not isinstance(found, str) or not found:
        raise BearerError(403, "insufficient_scope", "the organization of this request is unknown")
    return found


class BearerValidator:
    """Verifies Logto JWT access tokens for one API.

    `audience` is the API resource indicator; `organization=True` accepts organization tokens
    (`aud` = `urn:logto:organization:<id>`) instead. Give the organization an endpoint serves
    (`organization_id=` of `verify`, `requires_bearer`, `dependency`, the middlewares) to refuse
    tokens for any other; without it, `AccessTokenUser.organization_id` says which one the token
    is for. Verified tokens are cached until they expire, so a client calling repeatedly costs
    one signature check (every other check runs on every call). Fetching the provider's
    keys takes at most `http_deadline` seconds in all (each step at most 5 s); past it the
    request is answered 503.
    """

    def __init__(self, issuer: str, audience: str | None = None, *, organization: bool = False,
                 algorithms: Collection[str] = ("ES384",), leeway: int = 60,
                 http_client: httpx.Client | None = None, async_http_client: httpx.AsyncClient | None = None,
                 clock: Callable[[], float] = time.time, http_deadline: float = DEFAULT_DEADLINE) -> None:
        if audience is None and not organization:
            raise ValueError("BearerValidator needs the API resource indicator (audience) or organization=True")
        self.issuer = issuer.rstrip("/").removesuffix("/.well-known/openid-configuration")
        self.audience, self.organization = audience, organization
        self.algorithms, self.leeway, self._clock = tuple(algorithms), leeway, clock
        self.provider = ProviderCache(self.issuer, clock=clock)
        self._sync = SyncDriver(http_client, timeout=5.0, deadline=http_deadline)
        self._async = AsyncDriver(async_http_client, timeout=5.0, deadline=http_deadline)
        # token -> (the kid that verified it, its claims)
        self._verified: LRUCache[str, tuple[str | None, dict[str, Any]]] = LRUCache(maxsize=1024)
        self._lock = threading.Lock()

    @staticmethod
    def token_from(authorization: str | None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise BearerError(401, None, "an access token is required")
        return token.strip()

    def verify(self, token: str, required_scopes: Iterable[str] = (),
               organization_id: str | None = None) -> Flow[AccessTokenUser]:
        """The user of `token`, or `BearerError` (401 invalid_token, 403 insufficient_scope: a
        scope is missing, or the token is not for `organization_id` when one is given)."""
        if organization_id is not None and (not isinstance(organization_id, str) or not organization_id):
            raise BearerError(403, "insufficient_scope", "the organization of this request is unknown")
        with self._lock:
            hit = self._verified.get(token)
        try:
            if hit is not None and hit[0] not in (yield from self.provider.keys()):
                hit = None  # its key left the JWKS since: verified again (and refused)
            if hit is None:
                # RFC 9068: only a JWT access token, never an ID token addressed to the API.
                # Anyone can send one: an unknown kid refetches the JWKS only at a limited rate.
                claims = yield from verify_signed_jwt(token, self.provider, self.algorithms,
                                                      types=("at+jwt", "application/at+jwt"), trusted_source=False)
                hit = (decode_unverified(token)[0].get("kid"), claims)
            claims = hit[1]
            self._check(claims)
            # The cache holds what the signature proves (the claims), never a decision for one
            # endpoint: the organization is checked against this call's, every time.
            with self._lock:
                self._verified[token] = hit
            organization = _token_organization(claims, organization_id)
        except TokenValidationError as exc:
            raise BearerError(401, "invalid_token", str(exc)) from None
        except (ProviderUnavailable, ProviderError) as exc:
            raise BearerError(503, "temporarily_unavailable", "the provider's keys cannot be fetched") from exc
        user = AccessTokenUser(claims)
        user.organization_id = organization
        missing = [scope for scope in required_scopes if scope not in user.scopes]
        if missing:
            raise BearerError(403, "insufficient_scope", "the token lacks a required scope", missing)
        return user

    def _check(self, claims: dict[str, Any]) -> None:
        if self.organization:
            organizations = _audience_organizations(claims)
            if not organizations:
                raise TokenValidationError("token is not an organization token")
            # Any of them passes here: which organization is this call's is decided apart.
            audience = ORGANIZATION_PREFIX + organizations[0]
        else:
            audience = str(self.audience)
        check_standard_claims(claims, issuer=self.issuer, audience=audience, now=self._clock(), leeway=self.leeway)

    def verify_sync(self, authorization: str | None, required_scopes: Iterable[str] = (),
                    organization_id: str | None = None) -> AccessTokenUser:
        """Verify an `Authorization` header value (WSGI, threads)."""
        return self._sync.run(self.verify(self.token_from(authorization), required_scopes, organization_id))

    async def verify_async(self, authorization: str | None, required_scopes: Iterable[str] = (),
                           organization_id: str | None = None) -> AccessTokenUser:
        """Verify an `Authorization` header value (ASGI)."""
        return await self._async.run(self.verify(self.token_from(authorization), required_scopes, organization_id))

    def _organization_for(self, source: _OrganizationOf | None, authorization: str | None, request: Any) -> str | None:
        self.token_from(authorization)  # no token at all: that 401 comes first
        return _expected_organization(source, request)

    def dependency(self, *scopes: str, organization_id: _OrganizationOf | None = None) -> Callable[[Request], Any]:
        """A FastAPI dependency: `user: AccessTokenUser = Depends(validator.dependency("read:items"))`.
        `organization_id`: the organization the endpoint serves, or a callable given the request
        (`lambda request: request.path_params["org_id"]`); a token for another one is refused."""
        from starlette.exceptions import HTTPException
        from starlette.requests import Request

        async def access_token_user(request: Request) -> AccessTokenUser:
            header = request.headers.get("authorization")
            try:
                organization = self._organization_for(organization_id, header, request)
                return await self.verify_async(header, scopes, organization)
            except BearerError as exc:
                raise HTTPException(exc.status, exc.description, headers=dict(exc.headers()[1:2])) from None

        # FastAPI reads the parameter's type to hand it the request: the class itself, since
        # `Request` is not a name of this module (the annotation is a string until evaluated).
        access_token_user.__annotations__["request"] = Request
        return access_token_user


class BearerAuthBackend(_Backend):
    """For Starlette's `AuthenticationMiddleware`: `request.user` is the token's caller and
    `request.auth.scopes` its scopes, so `@requires("read:items")` works. No token: anonymous.
    (A Starlette `AuthenticationBackend` to type checkers; Starlette checks no class at run time.)"""

    def __init__(self, validator: BearerValidator, *, organization_id: _OrganizationOf | None = None) -> None:
        # `organization_id`: see `BearerASGIMiddleware`.
        self.validator, self.organization_id = validator, organization_id

    async def authenticate(
            self, conn: HTTPConnection) -> tuple[starlette_auth.AuthCredentials, starlette_auth.BaseUser] | None:
        header = conn.headers.get("authorization")
        if header is None:
            return None
        try:
            organization = self.validator._organization_for(self.organization_id, header, conn)
            user = await self.validator.verify_async(header, (), organization)
        except BearerError as exc:
            # The middleware answers `on_error` only for Starlette's own exception class.
            raise _starlette_bearer_error()(exc.status, exc.error, exc.description, exc.scopes) from None
        # Both have the shape Starlette reads (`scopes`; `is_authenticated`, `display_name`...).
        return (cast("starlette_auth.AuthCredentials", BearerCredentials(user)),
                cast("starlette_auth.BaseUser", user))

    @staticmethod
    def on_error(conn: HTTPConnection, exc: Exception) -> Response:
        """Pass as `AuthenticationMiddleware(..., on_error=BearerAuthBackend.on_error)` for
        RFC 6750 answers (401 with `WWW-Authenticate`) instead of Starlette's plain 400."""
        from starlette.responses import Response

        if isinstance(exc, BearerError):
            return Response(exc.body(), exc.status, headers=dict(exc.headers()))
        return Response(str(exc), 400)


class BearerASGIMiddleware:
    """Puts the token's caller on `scope["user"]`/`scope["auth"]`; answers RFC 6750 errors for a
    bad token (and for a missing one when `required`), never a 500. Without a token, a user an
    outer middleware signed in (`LogtoASGIMiddleware`'s session) is kept; with one, the token's
    caller replaces it (a bad token is refused, never passed on as the session's user).

    `organization_id`: the organization the app serves, or a callable given the request's
    `HTTPConnection` (Starlette's: the `starlette` extra; before routing: no `path_params` yet,
    read `url.path`); a token for another organization is refused with 403."""

    def __init__(self, app: Any, validator: BearerValidator, *, required: bool = False,
                 required_scopes: Iterable[str] = (), organization_id: _OrganizationOf | None = None) -> None:
        self.app, self.validator, self.required = app, validator, required
        self.required_scopes = tuple(required_scopes)
        self.organization_id = organization_id

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == b"authorization"),
                      None)
        try:
            if header is None and not self.required:
                # An outer session middleware's user (or anonymous user) is kept; a token's user
                # already in the scope is no one's to keep on a request without a token.
                if "user" not in scope or isinstance(scope["user"], AccessTokenUser):
                    scope["user"], scope["auth"] = _ANONYMOUS, AnonymousAuth()
            else:
                organization = self.validator._organization_for(self.organization_id, header,
                                                                _connection(scope, self.organization_id))
                user = await self.validator.verify_async(header, self.required_scopes, organization)
                scope["user"], scope["auth"] = user, BearerCredentials(user)
        except BearerError as exc:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await send({"type": "http.response.start", "status": exc.status,
                        "headers": [(k.encode(), v.encode()) for k, v in exc.headers()]})
            await send({"type": "http.response.body", "body": exc.body()})
            return
        await self.app(scope, receive, send)


class BearerWSGIMiddleware:
    """Puts the token's caller on `environ["logto.access_token_user"]` (None without a token)
    and, when there is one, on `environ["logto.user"]` (with no `environ["logto.session"]`:
    the token, not a session cookie, authenticates the request; without a token an outer
    `LogtoWSGIMiddleware`'s user and session are kept); answers RFC 6750 errors for a bad
    token (and a missing one when `required`).

    `organization_id`: the organization the app serves, or a callable given the WSGI environ
    (before routing: read `PATH_INFO`); a token for another organization is refused with 403."""

    def __init__(self, app: Any, validator: BearerValidator, *, required: bool = False,
                 required_scopes: Iterable[str] = (), organization_id: _OrganizationOf | None = None) -> None:
        self.app, self.validator, self.required = app, validator, required
        self.required_scopes = tuple(required_scopes)
        self.organization_id = organization_id

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        header = environ.get("HTTP_AUTHORIZATION")
        try:
            user = None
            if header is not None or self.required:
                organization = self.validator._organization_for(self.organization_id, header, environ)
                user = self.validator.verify_sync(header, self.required_scopes, organization)
        except BearerError as exc:
            start_response(f"{exc.status} {_REASONS.get(exc.status, '')}", exc.headers())
            return [exc.body()]
        environ["logto.access_token_user"] = user
        if user is not None:
            environ["logto.user"], environ["logto.session"] = user, None
        return self.app(environ, start_response)


def requires_bearer(validator: BearerValidator, *scopes: str,
                    organization_id: _OrganizationOf | None = None) -> Callable[[F], F]:
    """Protect one endpoint: an `async def endpoint(request)` (Starlette, FastAPI) or a plain
    Flask view. The verified `AccessTokenUser` is put on `request.state.access_token_user`
    (Starlette) or `flask.g.access_token_user` (Flask).

    `organization_id`: the organization the endpoint serves, or a callable given the request
    (Starlette's `request`, Flask's `flask.request`), e.g.
    `lambda request: request.path_params["org_id"]` / `lambda request: request.view_args["org_id"]`;
    a token for another organization is refused with 403."""

    def decorate(endpoint: F) -> F:
        if inspect.iscoroutinefunction(endpoint):
            from starlette.requests import HTTPConnection
            from starlette.responses import Response

            @functools.wraps(endpoint)
            async def async_endpoint(*args: Any, **kwargs: Any) -> Any:
                request = kwargs.get("request") or next(a for a in args if isinstance(a, HTTPConnection))
                header = request.headers.get("authorization")
                try:
                    organization = validator._organization_for(organization_id, header, request)
                    request.state.access_token_user = await validator.verify_async(header, scopes, organization)
                except BearerError as exc:
                    return Response(exc.body(), exc.status, headers=dict(exc.headers()))
                return await endpoint(*args, **kwargs)

            return async_endpoint  # type: ignore[return-value]

        @functools.wraps(endpoint)
        def sync_endpoint(*args: Any, **kwargs: Any) -> Any:
            import flask

            header = flask.request.headers.get("Authorization")
            try:
                organization = validator._organization_for(organization_id, header, flask.request)
                flask.g.access_token_user = validator.verify_sync(header, scopes, organization)
            except BearerError as exc:
                return flask.Response(exc.body(), exc.status, headers=exc.headers())
            return endpoint(*args, **kwargs)

        return sync_endpoint  # type: ignore[return-value]

    return decorate


def _connection(scope: MutableMapping[str, Any], source: _OrganizationOf | None) -> Any:
    """What an `organization_id` callable is given: Starlette's `HTTPConnection` of the scope
    (built, and Starlette imported, only when there is such a callable)."""
    if not callable(source):
        return None
    from starlette.requests import HTTPConnection

    return HTTPConnection(scope)


@functools.cache
def _starlette_bearer_error() -> type[BearerError]:
    """`BearerError` as a Starlette `AuthenticationError` too (made on first use, so that
    importing this module needs no Starlette)."""
    from starlette.authentication import AuthenticationError

    class StarletteBearerError(BearerError, AuthenticationError):
        pass

    return StarletteBearerError


_ANONYMOUS = AnonymousUser()
_REASONS = {401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}
