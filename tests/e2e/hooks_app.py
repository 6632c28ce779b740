"""A small app with `LogtoHooks` for tests/e2e/test_hooks_oidc.py, configured from the
environment like the examples: `asgi()` (async hooks, for uvicorn `--factory`) and `wsgi()`
(plain hooks, for waitress `--call`). Alice is an admin, mallory may not sign in."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from logto_middleware import LogtoASGIMiddleware, LogtoConfig, LogtoHooks, LogtoUser, LogtoWSGIMiddleware


def _roles(user: LogtoUser) -> list[str]:
    return ["admin"] if user.claims.get("username") == "alice" else ["reader"]


class RoleHooks(LogtoHooks):
    def sign_in(self, user: LogtoUser, tokens: Mapping[str, Any]) -> bool | str:
        return user.claims.get("username") != "mallory"

    def session_data(self, fields: dict[str, Any], user: LogtoUser, trigger: str,
                     tokens: Mapping[str, Any]) -> Mapping[str, Any]:
        return {"roles": _roles(user), "trigger": trigger}

    def session(self, session: dict[str, Any], user: LogtoUser) -> Mapping[str, Any]:
        session["user"]["roles"] = user.fields["roles"]
        return session


class AsyncRoleHooks(LogtoHooks):
    async def sign_in(self, user: LogtoUser, tokens: Mapping[str, Any]) -> bool | str:  # type: ignore[override]
        return user.claims.get("username") != "mallory"

    async def session_data(self, fields: dict[str, Any], user: LogtoUser, trigger: str,  # type: ignore[override]
                           tokens: Mapping[str, Any]) -> Mapping[str, Any]:
        return {"roles": _roles(user), "trigger": trigger}

    async def session(self, session: dict[str, Any], user: LogtoUser) -> Mapping[str, Any]:  # type: ignore[override]
        session["user"]["roles"] = user.fields["roles"]
        return session


def _me(user: Any, session: Any) -> dict[str, Any]:
    return {"authenticated": user.is_authenticated, "fields": dict(user.fields),
            "access_token": getattr(session, "access_token", None)}


def asgi() -> Any:
    async def me(request: Request) -> JSONResponse:
        auth = request.auth
        return JSONResponse(_me(request.user, auth if hasattr(auth, "access_token") else None))

    app = Starlette(routes=[Route("/me", me), Route("/", me)])
    return LogtoASGIMiddleware(app, LogtoConfig.from_env(hooks=AsyncRoleHooks()))


def wsgi() -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(_me(environ["logto.user"], environ["logto.session"])).encode()]

    return LogtoWSGIMiddleware(app, LogtoConfig.from_env(hooks=RoleHooks()))
