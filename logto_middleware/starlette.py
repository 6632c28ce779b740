"""Starlette helpers for `LogtoASGIMiddleware`: a sign-in route Starlette's `@requires` can name.

    app = Starlette(routes=[signin_route(), Route("/profile", profile)], middleware=[...])

    @requires("authenticated", redirect="signin")
    async def profile(request): ...

`requires(redirect=...)` needs a route *name* and sends `?next=<the URL>`; the middleware's own
sign-in is not a route of the app and reads `callbackUrl`, so this route translates one to the other.

`@requires_fresh_auth(300)` asks for a sign-in at most 300 seconds old (see its docstring).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ._protocol.freshness import require_max_age
from .helpers import fresh_auth_refusal, signin_url
from .session import AnonymousAuth, Session

__all__ = ["SIGNIN_ROUTE_NAME", "requires_fresh_auth", "signin_base_path", "signin_redirect", "signin_route"]

F = TypeVar("F", bound=Callable[..., Any])

SIGNIN_ROUTE_NAME = "signin"


def signin_route(path: str = "/login", *, name: str = SIGNIN_ROUTE_NAME, base_path: str | None = None) -> Route:
    """A route named `name` that sends the visitor to sign in and back to `?next=` (the page
    `@requires(..., redirect=name)` came from). `base_path`: the middleware's, when not the
    default `/api/auth` (an anonymous request knows it; a signed-in visitor's does not)."""

    async def endpoint(request: Request) -> RedirectResponse:
        return signin_redirect(request, base_path=base_path)

    return Route(path, endpoint, methods=["GET"], name=name)


def signin_redirect(request: Request, *, base_path: str | None = None) -> RedirectResponse:
    """A redirect to the middleware's sign-in, coming back to `?next=` or `?callbackUrl=`.
    The sign-in applies its same-origin rule to the address, so a foreign `next` lands on `/`."""
    callback = request.query_params.get("callbackUrl") or request.query_params.get("next") or "/"
    return RedirectResponse(signin_url(callback, base_path=base_path or signin_base_path(request)), status_code=303)


def signin_base_path(request: Request) -> str:
    """Where the middleware's routes are on the site: `LogtoConfig.base_path` under the prefix the
    app is served under (`root_path`), as the middleware put it on the request; else as
    `request.auth` (the session, or the anonymous one) tells it; `/api/auth` otherwise."""
    on_site = request.scope.get("logto.base_path")
    if isinstance(on_site, str):
        return on_site
    auth = request.scope.get("auth")
    return auth.base_path if isinstance(auth, AnonymousAuth | Session) else "/api/auth"


def requires_fresh_auth(max_age: int) -> Callable[[F], F]:
    """Decorates an endpoint (sync or async, taking the request) that needs a sign-in at most
    `max_age` seconds old (the configured clock skew allowed). Otherwise a page (`Accept:
    text/html`) is redirected to sign in again (`max_age` is sent to Logto, which asks for
    credentials) and comes back; any other request gets 401 with `WWW-Authenticate: Cookie
    error="insufficient_user_authentication", max_age="..."` (RFC 9470).

        @requires_fresh_auth(300)
        async def delete_account(request): ...
    """
    require_max_age(max_age)

    def refusal_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Response | None:
        request = kwargs.get("request") or next((a for a in args if isinstance(a, Request)), None)
        if not isinstance(request, Request):
            raise TypeError("requires_fresh_auth decorates an endpoint that takes the request")
        session = request.scope.get("auth")
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        refusal = fresh_auth_refusal(session if isinstance(session, Session) else None, max_age, here=here,
                                     base_path=signin_base_path(request),
                                     page="text/html" in request.headers.get("accept", ""))
        if refusal is None:
            return None
        if refusal.body is None:
            return Response(status_code=refusal.status, headers=refusal.headers)
        return JSONResponse(refusal.body, refusal.status, headers=refusal.headers)

    def decorator(endpoint: F) -> F:
        if inspect.iscoroutinefunction(endpoint):
            @functools.wraps(endpoint)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                refusal = refusal_of(args, kwargs)
                return refusal if refusal is not None else await endpoint(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(endpoint)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            refusal = refusal_of(args, kwargs)
            return refusal if refusal is not None else endpoint(*args, **kwargs)

        return cast(F, wrapper)

    return decorator
