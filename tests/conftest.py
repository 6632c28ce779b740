"""Shared fixtures: a fake Logto, and one harness per middleware so every behaviour is
checked through both ASGI and WSGI."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

# Real Redis deployments (standalone, cluster, sentinel, TLS), each started once for the run.
from redis_support import redis_cluster, redis_sentinel, redis_server, redis_tls, redis_url  # noqa: F401
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from logto_middleware import LogtoASGIMiddleware, LogtoConfig, LogtoWSGIMiddleware
from logto_middleware.testing import FakeLogto

ORIGIN = "http://localhost:3000"
SECRET = "test-secret-0123456789-abcdefghijklmnop"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    # In CI (LOGTO_REQUIRE_ALL=1) a skipped test is a failure: no suite may vanish silently.
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("LOGTO_REQUIRE_ALL") == "1" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which LOGTO_REQUIRE_ALL=1 forbids: {report.longrepr}"


@pytest.fixture(autouse=True)
def private_refresh_lock_directory(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test coordinates refreshes in a directory of its own (the default directory is under
    XDG_RUNTIME_DIR): a refresh record left by another test whose cookie had the same fixed tokens
    must not answer for this one."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("run")))


class Clock:
    """A clock tests can move."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def echo_fields(user: Any, session: Any) -> dict[str, Any]:
    return {
        "authenticated": user.is_authenticated,
        "id": user.id, "name": user.name, "email": user.email, "image": user.image,
        "display_name": user.display_name,
        "access_token": getattr(session, "access_token", None),
        "scopes": list(getattr(session, "scopes", [])),
        "error": getattr(session, "error", None),
    }


def asgi_echo_app() -> Starlette:
    async def home(request: Request) -> JSONResponse:
        auth = request.auth
        return JSONResponse(echo_fields(request.user, auth if hasattr(auth, "access_token") else None))

    @requires("authenticated", status_code=401)
    async def protected(request: Request) -> JSONResponse:
        return JSONResponse({"id": request.user.identity})

    async def own_cookie(request: Request) -> JSONResponse:
        response = JSONResponse({"ok": True})
        response.set_cookie("app-cookie", "1")
        return response

    return Starlette(routes=[Route("/", home), Route("/protected", protected), Route("/own-cookie", own_cookie),
                             Route("/{path:path}", home, methods=["GET", "POST"])])


def wsgi_echo_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    user, session = environ["logto.user"], environ["logto.session"]
    path = environ["PATH_INFO"]
    headers = [("Content-Type", "application/json")]
    if path == "/protected" and not user.is_authenticated:
        start_response("401 Unauthorized", headers)
        return [b'{"error":"unauthorized"}']
    if path == "/own-cookie":
        headers.append(("Set-Cookie", "app-cookie=1; Path=/"))
    body = {"id": user.identity} if path == "/protected" else echo_fields(user, session)
    start_response("200 OK", headers)
    return [json.dumps(body).encode()]


class Harness:
    """One middleware (ASGI or WSGI) around an echo app, a browser-like client, and the fake."""

    def __init__(self, kind: str, fake: FakeLogto, clock: Clock, **settings: Any) -> None:
        self.kind = kind
        self.fake = fake
        self.clock = clock
        store = settings.pop("store", None)
        asgi_app, wsgi_app = settings.pop("asgi_app", None), settings.pop("wsgi_app", None)
        # The middleware's own options (not the configuration's): a bearer validator and its paths.
        options = {name: settings.pop(name) for name in ("bearer", "bearer_only") if name in settings}
        self.config = LogtoConfig(issuer=fake.issuer, client_id=fake.client_id, client_secret=fake.client_secret,
                                  secret=settings.pop("secret", SECRET), **settings)
        self.middleware: LogtoASGIMiddleware | LogtoWSGIMiddleware
        if kind == "asgi":
            self.middleware = LogtoASGIMiddleware(asgi_app or asgi_echo_app(), self.config, store=store,
                                                  http_client=fake.async_httpx_client(), clock=clock, **options)
            self.client: httpx.Client = TestClient(self.middleware, base_url=ORIGIN, follow_redirects=False)
        else:
            self.middleware = LogtoWSGIMiddleware(wsgi_app or wsgi_echo_app, self.config, store=store,
                                                  http_client=fake.httpx_client(), clock=clock, **options)
            self.client = httpx.Client(transport=httpx.WSGITransport(app=self.middleware), base_url=ORIGIN,
                                       follow_redirects=False)

    def browser(self) -> httpx.Client:
        """Another browser (its own cookie jar) on the same app."""
        if self.kind == "asgi":
            return TestClient(self.middleware, base_url=ORIGIN, follow_redirects=False)
        return httpx.Client(transport=httpx.WSGITransport(app=self.middleware), base_url=ORIGIN,
                            follow_redirects=False)

    def start_sign_in(self, **params: str) -> httpx.Response:
        return self.client.get("/api/auth/signin", params=params)

    def sign_in(self, login: str = "alice", **params: str) -> httpx.Response:
        """Run the whole sign-in; returns the callback's response."""
        start = self.start_sign_in(**params)
        assert start.status_code == 302, start.text
        callback = self.fake.authorize(start.headers["location"], login=login)
        return self.client.get(callback)

    def me(self) -> dict[str, Any]:
        response = self.client.get("/")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    @property
    def session_cookie(self) -> str:
        """The session cookie's base name in this configuration (Logto's or Auth.js's)."""
        return self.middleware.core.manager.session_cookie

    def session_cookie_names(self) -> list[str]:
        return [name for name in self.client.cookies if name.startswith(self.session_cookie)]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> FakeLogto:
    return FakeLogto(clock=clock)


@pytest.fixture(params=["asgi", "wsgi"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def harness(kind: str, fake: FakeLogto, clock: Clock) -> Harness:
    return Harness(kind, fake, clock)


@pytest.fixture
def make_harness(kind: str, fake: FakeLogto, clock: Clock) -> Any:
    def make(**settings: Any) -> Harness:
        return Harness(kind, fake, clock, **settings)
    return make
