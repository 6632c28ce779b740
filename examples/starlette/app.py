"""Sign in with Logto in a Starlette app.

    python examples/starlette/app.py        # uvicorn on HOST:PORT (default 127.0.0.1:3000)
    uvicorn app:app --app-dir examples/starlette

Configuration comes from the environment or a `.env` file in the current directory:
AUTH_LOGTO_ISSUER, AUTH_LOGTO_ID, AUTH_LOGTO_SECRET, AUTH_SECRET, and optionally AUTH_URL,
AUTH_TRUST_HOST, AUTH_REFRESH_LEEWAY, AUTH_SESSION_STORE (e.g. redis://127.0.0.1:6379/0),
AUTH_LOGTO_SCOPES and AUTH_LOGTO_RESOURCES. With an API resource configured the app also serves
a tiny example API at /example-api/items (access tokens of that resource with the scope
read:items) and calls it from /api-demo. `make demo` runs it against a local development provider.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import cast

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from logto_middleware import (
    AccessTokenUser,
    AsyncSession,
    BearerASGIMiddleware,
    BearerValidator,
    LogtoASGIMiddleware,
    LogtoConfig,
    LogtoConfigError,
    LogtoError,
)

sys.path.append(str(Path(__file__).resolve().parents[1]))  # examples/, for the shared pages
import common

FRAMEWORK = "Starlette"


def _root(request: Request) -> str:
    """The prefix the app is served under (`uvicorn --root-path`, a `Mount`), for the pages' links."""
    return str(request.scope.get("root_path", "")).rstrip("/")


async def home(request: Request) -> Response:
    return HTMLResponse(common.home_page(request.user, FRAMEWORK, root=_root(request)), headers=common.NO_STORE)


async def profile(request: Request) -> Response:
    if not request.user.is_authenticated:
        location = common.signin_redirect(request.url.path, request.url.query, root=_root(request))
        return RedirectResponse(location, status_code=302)
    page = common.profile_page(request.user, request.auth, FRAMEWORK, root=_root(request))
    return HTMLResponse(page, headers=common.NO_STORE)


async def devices(request: Request) -> Response:
    if not request.user.is_authenticated:
        return RedirectResponse(common.signin_redirect(request.url.path, request.url.query), status_code=302)
    return HTMLResponse(common.devices_page(request.user, FRAMEWORK, _root(request)), headers=common.NO_STORE)


async def me(request: Request) -> Response:
    # An API answers 401, not a redirect to a sign-in page.
    if not request.user.is_authenticated:
        return JSONResponse(common.UNAUTHORIZED, status_code=401, headers=common.NO_STORE)
    return JSONResponse(common.me_payload(request.user, request.auth), headers=common.NO_STORE)


async def api_demo(request: Request) -> Response:
    """Get an access token for the example API's resource, call the API with it over HTTP, and
    switch organizations: everything on the server, the tokens never reach the browser."""
    if not request.user.is_authenticated:
        location = common.signin_redirect(request.url.path, request.url.query, root=_root(request))
        return RedirectResponse(location, status_code=302)
    session = request.auth
    assert isinstance(session, AsyncSession)
    demo = common.ApiDemo(request.app.state.example_api, userinfo_scopes=common.userinfo_scopes_granted(session))
    if demo.api is not None:
        await call_example_api(request, session, demo)
    if demo.userinfo_scopes:
        await switch_organization(session, demo, request.query_params.get("organization"))
    page = common.api_demo_page(request.user, demo, FRAMEWORK, root=_root(request))
    return HTMLResponse(page, headers=common.NO_STORE)


async def call_example_api(request: Request, session: AsyncSession, demo: common.ApiDemo) -> None:
    assert demo.api is not None
    try:
        token = await session.get_access_token(resource=demo.api.resource)
        demo.token_claims = await session.get_access_token_claims(demo.api.resource)
    except LogtoError as exc:  # AccessTokenError: not granted, no refresh token, provider refused
        demo.token_error = str(exc)
        return
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    injected: httpx.AsyncClient | None = request.app.state.api_client
    try:
        if injected is not None:
            answer = await injected.get(demo.api.items_url, headers=headers)
        else:
            async with httpx.AsyncClient(timeout=10.0) as client:
                answer = await client.get(demo.api.items_url, headers=headers)
    except httpx.HTTPError as exc:
        demo.call_error = f"{type(exc).__name__}: {exc}"
        return
    demo.record_answer(answer.status_code, answer.text)


async def switch_organization(session: AsyncSession, demo: common.ApiDemo, selected: str | None) -> None:
    try:
        demo.userinfo = await session.fetch_user_info()
    except LogtoError as exc:
        demo.userinfo_error = str(exc)
        return
    if not selected:
        return
    demo.selected_organization = selected
    if selected not in demo.organizations:
        demo.organization_error = "you are not a member of that organization"
        return
    try:
        demo.organization_claims = await session.get_organization_token_claims(selected)
    except LogtoError as exc:
        demo.organization_error = str(exc)


async def items(request: Request) -> Response:
    """The example API. `BearerASGIMiddleware` let the request through, so `request.user` is the
    caller of a valid access token for this API's resource with the scope read:items."""
    caller = request.user
    assert isinstance(caller, AccessTokenUser)
    return JSONResponse(common.items_payload(caller), headers=common.NO_STORE)


def example_api_app(api: common.ExampleApi, config: LogtoConfig,
                    http_client: httpx.AsyncClient | None = None) -> ASGIApp:
    """The example API as an ASGI app of its own, behind the bearer-token validator: 401 without a
    valid token for `api.resource`, 403 without the scope read:items (RFC 6750)."""
    validator = BearerValidator(config.issuer, audience=api.resource, leeway=api.leeway,
                                async_http_client=http_client)
    routes = [Route(common.API_PATH.removeprefix(common.API_PREFIX), items)]
    api_app = BearerASGIMiddleware(Starlette(routes=routes), validator, required=True,
                                   required_scopes=(common.API_SCOPE,))
    # cast: BearerASGIMiddleware annotates `scope` as dict where ASGI (and Starlette) say MutableMapping.
    return cast("ASGIApp", api_app)


def create_app(config: LogtoConfig | None = None, *, api_url: str | None = None,
               http_client: httpx.AsyncClient | None = None, api_client: httpx.AsyncClient | None = None) -> Starlette:
    """The example app with the middleware; `config` defaults to the environment (and .env).

    With an API resource configured it also mounts the example API. `api_url` is where
    `/api-demo` reaches it (default: EXAMPLE_API_URL, else this server's HOST and PORT);
    `http_client` talks to Logto, `api_client` to the example API (both for tests).
    """
    if config is None:
        config = common.load_config()
    api = common.example_api(config, base_url=api_url)
    routes: list[BaseRoute] = [Route("/", home), Route("/profile", profile), Route("/devices", devices),
                               Route("/api/me", me), Route("/api-demo", api_demo)]
    if api is not None:
        routes.append(Mount(common.API_PREFIX, app=example_api_app(api, config, http_client)))
    app = Starlette(routes=routes,
                    middleware=[Middleware(LogtoASGIMiddleware, config=config, http_client=http_client)])
    app.state.example_api = api
    app.state.api_client = api_client
    return app


def __getattr__(name: str) -> Starlette:
    # `app` for `uvicorn app:app`, built on first use: importing this module (for `create_app`)
    # needs no configuration.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    try:
        host, port = common.listen_address()
        config = common.load_config()
        application = create_app(config)
    except (LogtoConfigError, ValueError) as exc:
        sys.exit(f"{exc}\n{common.SETUP_HINT}")
    url = config.base_url or common.public_url(host, port)
    import uvicorn

    common.configure_logging()
    # uvicorn shuts down gracefully on Ctrl-C and SIGTERM, then re-raises the signal: exit quietly.
    common.serve(lambda: uvicorn.run(application, host=host, port=port), f"Logto + {FRAMEWORK} example: open {url}")


if __name__ == "__main__":
    main()
