"""One app serving pages to a signed-in browser and an API to access tokens, with one middleware
given a `BearerValidator` (its keyword `bearer=`), configured from the environment:

    uvicorn --factory combined_apps:starlette_app --app-dir tests/e2e
    waitress-serve --call combined_apps:flask_app        (with tests/e2e on PYTHONPATH)

`AUTH_*` as the middleware reads them (`AUTH_LOGTO_RESOURCES` names the API resource, whose
permission `read:items` the sign-in asks for), `AUTH_REFRESH_LEEWAY` in seconds. Routes:
`/` the user and where it came from; `/token` the signed-in session's access token for the API
(what a single-page app would fetch, to call the API with); `/api/items` the API: only a
token with `read:items` (the path is `bearer_only`: the cookie is no credential there).
"""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from logto_middleware import (
    AccessTokenError,
    AccessTokenUser,
    BearerValidator,
    LogtoASGIMiddleware,
    LogtoConfig,
    Session,
)

API_PATH = "/api/items"
SCOPES = ("openid", "offline_access", "profile", "email", "read:items")


def _setup() -> tuple[LogtoConfig, str, BearerValidator]:
    config = LogtoConfig.from_env(scopes=SCOPES, refresh_leeway=int(os.environ.get("AUTH_REFRESH_LEEWAY", "60")))
    resource = config.resources[0]
    # No leeway: a test watches a real token expire.
    return config, resource, BearerValidator(config.issuer, resource, leeway=0)


def starlette_app() -> Any:
    config, resource, validator = _setup()

    async def page(request: Request) -> JSONResponse:
        user = request.user
        return JSONResponse({"source": user.source, "id": user.identity,
                             "session": isinstance(request.auth, Session)})

    async def token(request: Request) -> JSONResponse:
        try:
            return JSONResponse({"token": await request.auth.get_access_token(resource)})
        except AccessTokenError as exc:
            return JSONResponse({"error": str(exc)}, 401)

    @requires("read:items", status_code=401)
    async def items(request: Request) -> JSONResponse:
        return JSONResponse({"source": request.user.source, "id": request.user.identity,
                             "scopes": request.user.scopes})

    app = Starlette(routes=[Route("/", page), Route("/token", token), Route(API_PATH, items)])
    return LogtoASGIMiddleware(app, config, bearer=validator, bearer_only=[API_PATH])


def flask_app() -> Any:
    import flask

    from logto_middleware.flask import LogtoFlask, current_user, get_access_token, get_session

    config, resource, validator = _setup()
    app = flask.Flask(__name__)

    @app.get("/")
    def page() -> Any:
        return {"source": current_user.source, "id": current_user.identity, "session": get_session() is not None}

    @app.get("/token")
    def token() -> Any:
        try:
            return {"token": get_access_token(resource)}
        except AccessTokenError as exc:
            return {"error": str(exc)}, 401

    @app.get(API_PATH)
    def items() -> Any:
        user = current_user
        if not isinstance(user, AccessTokenUser) or "read:items" not in user.scopes:
            return {"error": "a token with read:items is required"}, 401
        return {"source": user.source, "id": user.id, "scopes": user.scopes}

    LogtoFlask(app, config, bearer=validator, bearer_only=[API_PATH])
    return app
