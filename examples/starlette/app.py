"""Sign in with Logto in a Starlette app.

    python examples/starlette/app.py        # uvicorn on HOST:PORT (default 127.0.0.1:3000)
    uvicorn app:app --app-dir examples/starlette

Configuration comes from the environment or a `.env` file in the current directory:
AUTH_LOGTO_ISSUER, AUTH_LOGTO_ID, AUTH_LOGTO_SECRET, AUTH_SECRET, and optionally AUTH_URL,
AUTH_TRUST_HOST and AUTH_REFRESH_LEEWAY. `make demo` runs it against a local development provider.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from logto_middleware import LogtoASGIMiddleware, LogtoConfig, LogtoConfigError

sys.path.append(str(Path(__file__).resolve().parents[1]))  # examples/, for the shared pages
import common

FRAMEWORK = "Starlette"


async def home(request: Request) -> Response:
    return HTMLResponse(common.home_page(request.user, FRAMEWORK), headers=common.NO_STORE)


async def profile(request: Request) -> Response:
    if not request.user.is_authenticated:
        return RedirectResponse(common.signin_redirect(request.url.path, request.url.query), status_code=302)
    return HTMLResponse(common.profile_page(request.user, request.auth, FRAMEWORK), headers=common.NO_STORE)


async def me(request: Request) -> Response:
    # An API answers 401, not a redirect to a sign-in page.
    if not request.user.is_authenticated:
        return JSONResponse(common.UNAUTHORIZED, status_code=401, headers=common.NO_STORE)
    return JSONResponse(common.me_payload(request.user, request.auth), headers=common.NO_STORE)


def create_app(config: LogtoConfig | None = None) -> Starlette:
    """The example app with the middleware; `config` defaults to the environment (and .env)."""
    if config is None:
        config = common.load_config()
    routes = [Route("/", home), Route("/profile", profile), Route("/api/me", me)]
    return Starlette(routes=routes, middleware=[Middleware(LogtoASGIMiddleware, config=config)])


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
    except (LogtoConfigError, ValueError) as exc:
        sys.exit(f"{exc}\n{common.SETUP_HINT}")
    application = create_app(config)
    url = config.base_url or common.public_url(host, port)
    import uvicorn

    common.configure_logging()
    # uvicorn shuts down gracefully on Ctrl-C and SIGTERM, then re-raises the signal: exit quietly.
    signal.signal(signal.SIGTERM, common.exit_quietly)
    print(f"Logto + {FRAMEWORK} example: open {url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(application, host=host, port=port)


if __name__ == "__main__":
    main()
