"""Starlette helpers for `LogtoASGIMiddleware`: a sign-in route Starlette's `@requires` can name.

    app = Starlette(routes=[signin_route(), Route("/profile", profile)], middleware=[...])

    @requires("authenticated", redirect="signin")
    async def profile(request): ...

`requires(redirect=...)` needs a route *name* and sends `?next=<the URL>`; the middleware's own
sign-in is not a route of the app and reads `callbackUrl`, so this route translates one to the other.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from .helpers import signin_url
from .session import AnonymousAuth

__all__ = ["SIGNIN_ROUTE_NAME", "signin_base_path", "signin_redirect", "signin_route"]

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
    """The base path of the middleware's routes (`LogtoConfig.base_path`), as the anonymous
    `request.auth` tells it; `/api/auth` otherwise."""
    auth = request.scope.get("auth")
    return auth.base_path if isinstance(auth, AnonymousAuth) else "/api/auth"
