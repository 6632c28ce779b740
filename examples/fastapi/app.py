"""Sign in with Logto in a FastAPI app.

    python examples/fastapi/app.py          # uvicorn on HOST:PORT (default 127.0.0.1:3000)

The whole of it, for an app of your own (configuration from the AUTH_* environment variables):

    app = FastAPI()
    app.add_middleware(LogtoASGIMiddleware)

    @app.get("/api/me")
    async def me(user: CurrentUser) -> dict[str, str | None]:
        return user.to_dict()

Configuration comes from the environment or a `.env` file in the current directory, as for the
other examples. With an API resource configured (AUTH_LOGTO_RESOURCES) `/api/items` gets an access
token for it and calls the example API (`/example-api/items`, mounted here behind the bearer-token
validator) with it. `/docs` is Swagger UI: its Authorize button names the session cookie. `make
demo-fastapi` runs it against a local development provider.
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies of the routes defined
# inside `create_app`, which name its local `api`, from the evaluated annotations.

import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse

from logto_middleware import (
    AccessTokenUser,
    AnonymousUser,
    BearerASGIMiddleware,
    BearerValidator,
    LogtoASGIMiddleware,
    LogtoConfig,
    LogtoConfigError,
)
from logto_middleware.fastapi import CurrentSession, CurrentUser, LoginRequired, OptionalUser, access_token

sys.path.append(str(Path(__file__).resolve().parents[1]))  # examples/, for the shared pages
import common

FRAMEWORK = "FastAPI"


def _root(request: Request) -> str:
    """The prefix the app is served under (`uvicorn --root-path`, a mount), for the pages' links."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def create_app(config: LogtoConfig | None = None) -> FastAPI:
    """The example app with the middleware; `config` defaults to the environment (and .env)."""
    if config is None:
        config = common.load_config()
    app = FastAPI(title="Logto + FastAPI example")
    app.add_middleware(LogtoASGIMiddleware, config=config)

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request, user: OptionalUser) -> HTMLResponse:
        page = common.home_page(user or AnonymousUser(), FRAMEWORK, root=_root(request))
        return HTMLResponse(page, headers=common.NO_STORE)

    @app.get("/profile", response_class=HTMLResponse)
    async def profile(request: Request, user: LoginRequired, session: CurrentSession) -> HTMLResponse:
        # A page: an anonymous visitor is sent to sign in and comes back here.
        page = common.profile_page(user, session, FRAMEWORK, root=_root(request))
        return HTMLResponse(page, headers=common.NO_STORE)

    @app.get("/devices", response_class=HTMLResponse)
    async def devices(user: LoginRequired, request: Request) -> HTMLResponse:
        return HTMLResponse(common.devices_page(user, FRAMEWORK, _root(request)), headers=common.NO_STORE)

    @app.get("/api/me")
    async def me(user: CurrentUser, session: CurrentSession) -> JSONResponse:
        # An API: 401 when anonymous.
        return JSONResponse(common.me_payload(user, session), headers=common.NO_STORE)

    api = common.example_api(config)
    if api is not None:
        app.mount(common.API_PREFIX, example_api_app(api, config))

        @app.get("/api/items")
        async def items(token: Annotated[str, Depends(access_token(api.resource))]) -> JSONResponse:
            """Call the example API with the signed-in user's access token for its resource."""
            async with httpx.AsyncClient(timeout=10.0) as client:
                answer = await client.get(api.items_url, headers={"Authorization": f"Bearer {token}"})
            if answer.status_code != 200:
                raise HTTPException(502, f"the example API answered {answer.status_code}")
            return JSONResponse(answer.json(), headers=common.NO_STORE)

    return app


def example_api_app(api: common.ExampleApi, config: LogtoConfig) -> Any:
    """The example API: 401 without a valid access token for `api.resource`, 403 without the
    scope read:items (RFC 6750); the caller is `request.user`."""
    items_app = FastAPI(openapi_url=None)

    @items_app.get("/items")
    async def items(request: Request) -> JSONResponse:
        caller = request.user
        assert isinstance(caller, AccessTokenUser)
        return JSONResponse(common.items_payload(caller), headers=common.NO_STORE)

    validator = BearerValidator(config.issuer, audience=api.resource, leeway=api.leeway)
    return BearerASGIMiddleware(items_app, validator, required=True, required_scopes=(common.API_SCOPE,))


def __getattr__(name: str) -> FastAPI:
    # `app` for `uvicorn app:app`, built on first use: importing this module needs no configuration.
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
    common.serve(lambda: uvicorn.run(application, host=host, port=port), f"Logto + {FRAMEWORK} example: open {url}")


if __name__ == "__main__":
    main()
