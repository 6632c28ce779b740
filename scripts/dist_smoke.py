"""Smoke test of an installed wheel, run by `scripts/check-dist.sh` inside a clean virtualenv.

    python dist_smoke.py wsgi   # only the base dependencies: a sign-in through the WSGI middleware
    python dist_smoke.py asgi   # with the `starlette` extra: a sign-in through the ASGI middleware,
                                # then Starlette's @requires and request.user on the signed-in request

Each signs in against `FakeLogto` (in process, through httpx's mock transport) and checks the
session cookie signs the next request in. The `wsgi` run also proves that a WSGI app needs no
Starlette: Starlette is not installed there, and importing the package does not import httpx or
joserfc either.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import sys
from collections.abc import Callable, Iterable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

APP = "http://app.example"


def check_installed() -> None:
    import logto_middleware

    here = logto_middleware.__file__ or ""
    if not here.startswith(sys.prefix):
        raise SystemExit(f"logto_middleware imported from {here}, not from the virtualenv {sys.prefix}")


def cookie_header(set_cookies: Iterable[str], jar: dict[str, str]) -> str:
    for header in set_cookies:
        for name, morsel in SimpleCookie(header).items():
            if morsel.value:
                jar[name] = morsel.value
            else:
                jar.pop(name, None)
    return "; ".join(f"{name}={value}" for name, value in jar.items())


def config_for(fake: Any) -> Any:
    from logto_middleware import LogtoConfig

    return LogtoConfig(issuer=fake.issuer, client_id=fake.client_id, client_secret=fake.client_secret,
                       secret="smoke-test-secret-0123456789abcdef", base_url=APP)


def smoke_wsgi() -> None:
    import logto_middleware  # noqa: F401 - the import under test: what it loads

    for heavy in ("starlette", "httpx", "joserfc", "redis"):
        if heavy in sys.modules:
            raise SystemExit(f"import logto_middleware imported {heavy}")
    if importlib.util.find_spec("starlette") is not None:
        raise SystemExit("starlette is installed with the base dependencies")

    from logto_middleware import LogtoWSGIMiddleware
    from logto_middleware.testing import FakeLogto

    fake = FakeLogto(auto_login="alice")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        user = environ["logto.user"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"hello {user.display_name}".encode() if user.is_authenticated else b"anonymous"]

    wrapped = LogtoWSGIMiddleware(app, config_for(fake), http_client=fake.httpx_client())
    jar: dict[str, str] = {}

    def get(url: str) -> tuple[str, dict[str, str], bytes]:
        parts = urlsplit(url)
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": parts.path, "QUERY_STRING": parts.query,
                   "SERVER_NAME": "app.example", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
                   "wsgi.input": io.BytesIO(b""), "HTTP_HOST": "app.example", "HTTP_COOKIE": cookie_header((), jar)}
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            answer["status"], answer["headers"] = status, headers

        body = b"".join(wrapped(environ, start_response))
        cookie_header([v for k, v in answer["headers"] if k.lower() == "set-cookie"], jar)
        return answer["status"], {k.lower(): v for k, v in answer["headers"]}, body

    assert get(APP + "/")[2] == b"anonymous"
    status, headers, _ = get(APP + "/api/auth/signin?callbackUrl=/")
    assert status.startswith("302"), status
    callback = fake.authorize(headers["location"])
    status, headers, _ = get(callback)
    assert status.startswith("302") and headers["location"] in ("/", APP + "/"), (status, headers)
    status, _, body = get(APP + "/")
    assert body.startswith(b"hello "), body
    print(f"wsgi: signed in ({body.decode()}) with only the base dependencies; starlette not installed")


def smoke_asgi() -> None:
    import httpx
    from starlette.applications import Starlette
    from starlette.authentication import requires
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from logto_middleware import LogtoASGIMiddleware
    from logto_middleware.testing import FakeLogto

    fake = FakeLogto(auto_login="alice")

    @requires("authenticated")
    async def profile(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"hello {request.user.display_name} {request.user.identity}")

    app = LogtoASGIMiddleware(Starlette(routes=[Route("/profile", profile)]), config_for(fake),
                              http_client=fake.async_httpx_client())

    async def run() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=APP) as client:
            assert (await client.get("/profile")).status_code == 403  # Starlette's `requires`, anonymous
            signin = await client.get("/api/auth/signin?callbackUrl=/profile")
            assert signin.status_code == 302, signin.status_code
            back = await client.get(fake.authorize(signin.headers["location"]))
            assert back.status_code == 302, back.status_code
            page = await client.get("/profile")
            assert page.status_code == 200, (page.status_code, page.text)
            return page.text

    text = asyncio.run(run())
    print(f"asgi: signed in ({text}) with the starlette extra; @requires('authenticated') let the user through")


if __name__ == "__main__":
    check_installed()
    {"wsgi": smoke_wsgi, "asgi": smoke_asgi}[sys.argv[1]]()
