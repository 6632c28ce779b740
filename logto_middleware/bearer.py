"""Protecting an API with Logto access tokens (`Authorization: Bearer <JWT>`, RFC 6750).

`BearerValidator` verifies a token: signature from the provider's cached JWKS (ES384 by
default), `iss`, `aud` (the API resource indicator, or `urn:logto:organization:<id>`),
`exp`/`nbf`, and the required scopes. Use it as a Starlette `AuthenticationBackend`
(`BearerAuthBackend`), as ASGI or WSGI middleware, or per endpoint with `requires_bearer`.
"""

from __future__ import annotations

import functools
import inspect
import json
import threading
import time
from collections.abc import Callable, Collection, Iterable, MutableMapping
from typing import Any, TypeVar

import httpx
from cachetools import LRUCache
from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError, BaseUser
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from ._protocol.provider import ProviderCache
from ._protocol.tokens import check_standard_claims, decode_unverified, verify_signed_jwt
from .errors import LogtoError, ProviderError, ProviderUnavailable, TokenValidationError
from .flow import DEFAULT_DEADLINE, AsyncDriver, Flow, SyncDriver
from .session import AnonymousUser

__all__ = ["AccessTokenUser", "BearerASGIMiddleware", "BearerAuthBackend", "BearerError", "BearerValidator",
           "BearerWSGIMiddleware", "requires_bearer"]

F = TypeVar("F", bound=Callable[..., Any])
ORGANIZATION_PREFIX = "urn:logto:organization:"


class BearerError(LogtoError, AuthenticationError):
    """A refused bearer token, with its RFC 6750 status and `WWW-Authenticate` challenge."""

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
    """The caller of an API request, from a verified access token."""

    def __init__(self, claims: dict[str, Any]) -> None:
        self.claims = claims
        self.id: str = str(claims.get("sub", ""))
        self.client_id: str | None = claims.get("client_id")
        self.organization_id: str | None = claims.get("organization_id")
        self.scopes: list[str] = str(claims.get("scope", "")).split()

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.id

    @property
    def identity(self) -> str:
        return self.id

    def __repr__(self) -> str:
        return f"AccessTokenUser(id={self.id!r}, scopes={self.scopes!r})"


class BearerValidator:
    """Verifies Logto JWT access tokens for one API.

    `audience` is the API resource indicator; `organization=True` accepts organization tokens
    (`aud` = `urn:logto:organization:<id>`) instead. Verified tokens are cached until they
    expire, so a client calling repeatedly costs one signature check. Fetching the provider's
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
        self._sync = SyncDriver(http_client or httpx.Client(timeout=5.0), deadline=http_deadline)
        self._async = AsyncDriver(async_http_client or httpx.AsyncClient(timeout=5.0), deadline=http_deadline)
        # token -> (the kid that verified it, its claims)
        self._verified: LRUCache[str, tuple[str | None, dict[str, Any]]] = LRUCache(maxsize=1024)
        self._lock = threading.Lock()

    @staticmethod
    def token_from(authorization: str | None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise BearerError(401, None, "an access token is required")
        return token.strip()

    def verify(self, token: str, required_scopes: Iterable[str] = ()) -> Flow[AccessTokenUser]:
        """The user of `token`, or `BearerError` (401 invalid_token, 403 insufficient_scope)."""
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
        except TokenValidationError as exc:
            raise BearerError(401, "invalid_token", str(exc)) from None
        except (ProviderUnavailable, ProviderError) as exc:
            raise BearerError(503, "temporarily_unavailable", "the provider's keys cannot be fetched") from exc
        with self._lock:
            self._verified[token] = hit
        user = AccessTokenUser(claims)
        missing = [scope for scope in required_scopes if scope not in user.scopes]
        if missing:
            raise BearerError(403, "insufficient_scope", "the token lacks a required scope", missing)
        return user

    def _check(self, claims: dict[str, Any]) -> None:
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self.organization:
            audience = next((a for a in audiences if isinstance(a, str) and a.startswith(ORGANIZATION_PREFIX)), "")
            if not audience:
                raise TokenValidationError("token is not an organization token")
        else:
            audience = str(self.audience)
        check_standard_claims(claims, issuer=self.issuer, audience=audience, now=self._clock(), leeway=self.leeway)

    def verify_sync(self, authorization: str | None, required_scopes: Iterable[str] = ()) -> AccessTokenUser:
        """Verify an `Authorization` header value (WSGI, threads)."""
        return self._sync.run(self.verify(self.token_from(authorization), required_scopes))

    async def verify_async(self, authorization: str | None, required_scopes: Iterable[str] = ()) -> AccessTokenUser:
        """Verify an `Authorization` header value (ASGI)."""
        return await self._async.run(self.verify(self.token_from(authorization), required_scopes))

    def dependency(self, *scopes: str) -> Callable[[Request], Any]:
        """A FastAPI dependency: `user: AccessTokenUser = Depends(validator.dependency("read:items"))`."""

        async def access_token_user(request: Request) -> AccessTokenUser:
            try:
                return await self.verify_async(request.headers.get("authorization"), scopes)
            except BearerError as exc:
                raise HTTPException(exc.status, exc.description, headers=dict(exc.headers()[1:2])) from None

        return access_token_user


class BearerAuthBackend(AuthenticationBackend):
    """For Starlette's `AuthenticationMiddleware`: `request.user` is the token's caller and
    `request.auth.scopes` its scopes, so `@requires("read:items")` works. No token: anonymous."""

    def __init__(self, validator: BearerValidator) -> None:
        self.validator = validator

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        header = conn.headers.get("authorization")
        if header is None:
            return None
        user = await self.validator.verify_async(header)
        return AuthCredentials(["authenticated", *user.scopes]), user

    @staticmethod
    def on_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
        """Pass as `AuthenticationMiddleware(..., on_error=BearerAuthBackend.on_error)` for
        RFC 6750 answers (401 with `WWW-Authenticate`) instead of Starlette's plain 400."""
        if isinstance(exc, BearerError):
            return Response(exc.body(), exc.status, headers=dict(exc.headers()))
        return Response(str(exc), 400)


class BearerASGIMiddleware:
    """Puts the token's caller on `scope["user"]`/`scope["auth"]`; answers RFC 6750 errors for a
    bad token (and for a missing one when `required`), never a 500."""

    def __init__(self, app: Any, validator: BearerValidator, *, required: bool = False,
                 required_scopes: Iterable[str] = ()) -> None:
        self.app, self.validator, self.required = app, validator, required
        self.required_scopes = tuple(required_scopes)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == b"authorization"),
                      None)
        try:
            if header is None and not self.required:
                scope["user"], scope["auth"] = _ANONYMOUS, AuthCredentials()
            else:
                user = await self.validator.verify_async(header, self.required_scopes)
                scope["user"], scope["auth"] = user, AuthCredentials(["authenticated", *user.scopes])
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
    """Puts the token's caller on `environ["logto.access_token_user"]` (None without a token);
    answers RFC 6750 errors for a bad token (and a missing one when `required`)."""

    def __init__(self, app: Any, validator: BearerValidator, *, required: bool = False,
                 required_scopes: Iterable[str] = ()) -> None:
        self.app, self.validator, self.required = app, validator, required
        self.required_scopes = tuple(required_scopes)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        header = environ.get("HTTP_AUTHORIZATION")
        try:
            user = None
            if header is not None or self.required:
                user = self.validator.verify_sync(header, self.required_scopes)
        except BearerError as exc:
            start_response(f"{exc.status} {_REASONS.get(exc.status, '')}", exc.headers())
            return [exc.body()]
        environ["logto.access_token_user"] = user
        return self.app(environ, start_response)


def requires_bearer(validator: BearerValidator, *scopes: str) -> Callable[[F], F]:
    """Protect one endpoint: an `async def endpoint(request)` (Starlette, FastAPI) or a plain
    Flask view. The verified `AccessTokenUser` is put on `request.state.access_token_user`
    (Starlette) or `flask.g.access_token_user` (Flask)."""

    def decorate(endpoint: F) -> F:
        if inspect.iscoroutinefunction(endpoint):
            @functools.wraps(endpoint)
            async def async_endpoint(*args: Any, **kwargs: Any) -> Any:
                request = kwargs.get("request") or next(a for a in args if isinstance(a, HTTPConnection))
                try:
                    request.state.access_token_user = await validator.verify_async(
                        request.headers.get("authorization"), scopes)
                except BearerError as exc:
                    return Response(exc.body(), exc.status, headers=dict(exc.headers()))
                return await endpoint(*args, **kwargs)

            return async_endpoint  # type: ignore[return-value]

        @functools.wraps(endpoint)
        def sync_endpoint(*args: Any, **kwargs: Any) -> Any:
            import flask

            try:
                flask.g.access_token_user = validator.verify_sync(flask.request.headers.get("Authorization"), scopes)
            except BearerError as exc:
                return flask.Response(exc.body(), exc.status, headers=exc.headers())
            return endpoint(*args, **kwargs)

        return sync_endpoint  # type: ignore[return-value]

    return decorate


_ANONYMOUS = AnonymousUser()
_REASONS = {401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}
