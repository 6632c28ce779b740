"""FastAPI dependencies for `LogtoASGIMiddleware`: the signed-in user, scopes, access tokens.

    app = FastAPI()
    app.add_middleware(LogtoASGIMiddleware)

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, str | None]:
        return user.to_dict()

Every dependency declares the session cookie as an OpenAPI `apiKey` scheme in a cookie, so
Swagger UI shows an Authorize button and marks the protected operations. The cookie is the
credential the middleware reads: sign in at `/api/auth/signin` in the same browser and Swagger's
requests carry it. (An `openIdConnect` scheme would make Swagger run its own sign-in and send a
bearer token, which this cookie middleware does not accept.)

With `LogtoASGIMiddleware(..., bearer=BearerValidator(...))` (or a bearer middleware) the
caller may come from an access token instead. `CurrentUser`, `OptionalUser` and `LoginRequired`
stay the signed-in person (`LogtoUser`; a token's request is 401 / None to them), as do the
dependencies that need a session (`CurrentSession`, `access_token`); `CurrentCaller` and
`OptionalCaller` take either (`LogtoUser | AccessTokenUser`, `user.source` says which), and
`requires_scopes` checks a token's own scopes.

Importing this module needs FastAPI; the rest of the package does not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyCookie

from ._protocol.freshness import require_max_age
from ._sessions.manager import SESSION_COOKIE
from .bearer import AccessTokenUser
from .errors import AccessTokenError, LogtoError, ProviderUnavailable, StoreUnavailable
from .helpers import fresh_auth_refusal, signin_url
from .session import AsyncSession, LogtoUser
from .starlette import signin_base_path

__all__ = ["CurrentCaller", "CurrentSession", "CurrentUser", "FreshAuth", "LoginRequired", "OptionalCaller",
           "OptionalUser", "RequestUser", "access_token", "current_caller", "current_session", "current_user",
           "login_required", "optional_caller", "optional_user", "requires_fresh_auth", "requires_scopes",
           "session_cookie"]

session_cookie = APIKeyCookie(
    name=SESSION_COOKIE, scheme_name="LogtoSession", auto_error=False,
    description="The Logto session cookie: sign in at /api/auth/signin in this browser, then call the API.")
"""The OpenAPI security scheme of the session cookie (the middleware, not this, checks it)."""

_T = TypeVar("_T")

RequestUser = LogtoUser | AccessTokenUser
"""The user of an authenticated request: a session's, or an access token's (`user.source`)."""

# A dependency parameter that only puts the scheme in the OpenAPI document.
_Cookie = Annotated[str | None, Security(session_cookie)]


def _unauthorized() -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, "unauthorized", headers={"WWW-Authenticate": "Cookie"})


async def optional_caller(request: Request, _cookie: _Cookie = None) -> RequestUser | None:
    """The signed-in user or an access token's (`user.source`), or None when anonymous."""
    user = request.scope.get("user")
    return user if isinstance(user, (LogtoUser, AccessTokenUser)) else None


async def current_caller(request: Request, _cookie: _Cookie = None) -> RequestUser:
    """The signed-in user or an access token's (`user.source`); 401 when anonymous."""
    user = await optional_caller(request)
    if user is None:
        raise _unauthorized()
    return user


async def optional_user(request: Request, _cookie: _Cookie = None) -> LogtoUser | None:
    """The signed-in user, or None (anonymous, or a request of an access token: no person signed in)."""
    user = request.scope.get("user")
    return user if isinstance(user, LogtoUser) else None


async def current_user(request: Request, _cookie: _Cookie = None) -> LogtoUser:
    """The signed-in user; 401 otherwise (for pages, see `login_required`; for an API that
    takes access tokens too, `current_caller`)."""
    user = await optional_user(request)
    if user is None:
        raise _unauthorized()
    return user


async def current_session(request: Request, _user: Annotated[RequestUser, Depends(current_caller)]) -> AsyncSession:
    """The signed-in session (tokens, scopes, expiry); 401 when anonymous or for an access
    token's request (it has no session)."""
    session = request.scope.get("auth")
    if not isinstance(session, AsyncSession):
        raise _unauthorized()
    return session


async def login_required(request: Request, _cookie: _Cookie = None) -> LogtoUser:
    """The signed-in user. Anonymous: a page (`Accept: text/html`) is redirected to sign-in and
    comes back to this URL; any other request gets 401."""
    user = await optional_user(request)
    if user is not None:
        return user
    if "text/html" in request.headers.get("accept", ""):
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        location = signin_url(here, base_path=signin_base_path(request))
        raise HTTPException(status.HTTP_303_SEE_OTHER, headers={"Location": location})
    raise _unauthorized()


CurrentUser = Annotated[LogtoUser, Depends(current_user)]
"""`user: CurrentUser`: the signed-in user, 401 otherwise."""
OptionalUser = Annotated[LogtoUser | None, Depends(optional_user)]
"""`user: OptionalUser`: the signed-in user or None."""
CurrentCaller = Annotated[RequestUser, Depends(current_caller)]
"""`caller: CurrentCaller`: the signed-in user or an access token's (`caller.source`), 401 when anonymous."""
OptionalCaller = Annotated[RequestUser | None, Depends(optional_caller)]
"""`caller: OptionalCaller`: the signed-in user, an access token's, or None."""
CurrentSession = Annotated[AsyncSession, Depends(current_session)]
"""`session: CurrentSession`: the signed-in session, 401 when anonymous."""
LoginRequired = Annotated[LogtoUser, Depends(login_required)]
"""`user: LoginRequired`: the signed-in user; anonymous pages go to sign-in, APIs get 401."""


class FreshAuth:
    """A dependency: the signed-in user, who signed in at Logto at most `max_age` seconds ago
    (the configured clock skew allowed). Otherwise a page (`Accept: text/html`) goes to sign in
    again (`max_age` is sent to Logto, which asks for credentials) and comes back; any other
    request gets 401 with `WWW-Authenticate: Cookie error="insufficient_user_authentication",
    max_age="..."` (RFC 9470's step-up challenge) and the sign-in link in the JSON body.

        @app.post("/account/delete")
        async def delete(user: Annotated[LogtoUser, Depends(FreshAuth(max_age=300))]): ...
    """

    def __init__(self, max_age: int = 300) -> None:
        self.max_age = require_max_age(max_age)

    async def __call__(self, request: Request, _cookie: _Cookie = None) -> LogtoUser:
        session = request.scope.get("auth")
        signed_in = session if isinstance(session, AsyncSession) else None
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        refusal = fresh_auth_refusal(signed_in, self.max_age, here=here, base_path=signin_base_path(request),
                                     page="text/html" in request.headers.get("accept", ""))
        if signed_in is not None and refusal is None:
            return signed_in.user
        # (without a session there is always a refusal)
        raise HTTPException(refusal.status, refusal.body, headers=refusal.headers) if refusal else _unauthorized()


def requires_fresh_auth(max_age: int) -> FreshAuth:
    """`FreshAuth(max_age)`: `dependencies=[Depends(requires_fresh_auth(300))]`."""
    return FreshAuth(max_age)


def requires_scopes(*scopes: str, resource: str | None = None) -> Callable[..., Awaitable[RequestUser]]:
    """A dependency: the signed-in user, granted every scope in `scopes`; 401 when anonymous,
    403 when a scope is missing. Without `resource` the session's scopes are checked (`email`,
    `urn:logto:scope:organizations`...); with it, the scopes of the access token for that API
    resource (API permissions such as `read:items` are granted there, not to the session).
    For an access token's request, the token's own scopes (with `resource`, the token must be
    for it: its `aud`).

        @app.get("/items", dependencies=[Depends(requires_scopes("read:items", resource=API))])
    """
    wanted = frozenset(scopes)

    async def dependency(request: Request, user: CurrentCaller) -> RequestUser:
        if isinstance(user, AccessTokenUser):
            granted: Iterable[str] = user.scopes if resource is None or _for_resource(user, resource) else ()
        elif resource is None:
            granted = (await current_session(request, user)).scopes
        else:
            session = await current_session(request, user)
            claims = await _token_call(session.get_access_token_claims(resource))
            scope = claims.get("scope")
            granted = scope.split() if isinstance(scope, str) else ()
        missing = wanted.difference(granted)
        if missing:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"missing scope: {' '.join(sorted(missing))}")
        return user

    return dependency


def _for_resource(user: AccessTokenUser, resource: str) -> bool:
    """Whether the token's audience is `resource` (an API's scopes are granted for that API)."""
    aud = user.claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    return resource in audiences


def access_token(resource: str | None = None, *, organization_id: str | None = None) -> Callable[..., Awaitable[str]]:
    """A dependency: a valid access token for `resource` (or the organization), refreshed when
    needed. 401 when anonymous or no token can be had (not granted, refresh refused: sign in
    again), 503 when the provider or the session store cannot be reached.

        async def items(token: Annotated[str, Depends(access_token("https://api.example.com"))]): ...
    """

    async def dependency(session: CurrentSession) -> str:
        return await _token_call(session.get_access_token(resource, organization_id))

    return dependency


async def _token_call(call: Awaitable[_T]) -> _T:
    """Await a session token method; its errors become clean HTTP answers."""
    try:
        return await call
    except AccessTokenError as exc:
        if exc.transient:
            raise _unavailable() from exc
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"no access token: {exc}",
                            headers={"WWW-Authenticate": "Cookie"}) from exc
    except (ProviderUnavailable, StoreUnavailable) as exc:
        raise _unavailable() from exc
    except LogtoError as exc:  # the provider answered something unusable
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, "the sign-in provider failed") from exc


def _unavailable() -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the sign-in provider is unavailable",
                         headers={"Retry-After": "5"})
