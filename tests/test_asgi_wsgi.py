"""Interface details: websockets, lifespan, Starlette conventions, body limits, the provider cache."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from conftest import ORIGIN, SECRET, Clock, Harness
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from logto_middleware import LogtoASGIMiddleware, LogtoConfig
from logto_middleware.testing import FakeLogto, make_session_cookie


def config_for(fake: FakeLogto, **settings: Any) -> LogtoConfig:
    return LogtoConfig(issuer=fake.issuer, client_id=fake.client_id, client_secret=fake.client_secret,
                       secret=SECRET, **settings)


def test_usable_as_starlette_middleware_with_requires_redirect(fake: FakeLogto) -> None:
    @requires("authenticated", redirect="signin")
    async def profile(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"hello {request.user.display_name}")

    async def signin(request: Request) -> PlainTextResponse:
        return PlainTextResponse("please sign in")

    config = config_for(fake)
    app = Starlette(routes=[Route("/profile", profile), Route("/signin", signin, name="signin")],
                    middleware=[Middleware(LogtoASGIMiddleware, config=config, http_client=fake.async_httpx_client())])
    client = TestClient(app, base_url=ORIGIN)
    assert client.get("/profile").text == "please sign in"
    cookie = make_session_cookie(config, {"sub": "u", "name": "Ada"})
    assert client.get("/profile", headers={"cookie": cookie}).text == "hello Ada"


def test_websocket_sees_the_user_without_refresh(fake: FakeLogto) -> None:
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"user": websocket.user.display_name,
                                   "authenticated": websocket.user.is_authenticated})
        await websocket.close()

    config = config_for(fake)
    app = LogtoASGIMiddleware(Starlette(routes=[WebSocketRoute("/ws", ws)]), config,
                              http_client=fake.async_httpx_client())
    client = TestClient(app, base_url=ORIGIN)
    cookie = make_session_cookie(config, {"sub": "u", "name": "Ada"}, refresh_token="rt", expires_in=0)
    with client.websocket_connect("/ws", headers={"cookie": cookie}) as socket:
        assert socket.receive_json() == {"user": "Ada", "authenticated": True}
    with client.websocket_connect("/ws") as socket:
        assert socket.receive_json() == {"user": "", "authenticated": False}
    assert fake.counts["token:refresh_token"] == 0


def test_lifespan_passes_through_untouched(fake: FakeLogto) -> None:
    events: list[str] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        assert "user" not in scope
        message = await receive()
        events.append(message["type"])
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        events.append(message["type"])
        await send({"type": "lifespan.shutdown.complete"})

    app = LogtoASGIMiddleware(inner, config_for(fake))  # type: ignore[arg-type]
    with TestClient(app):
        pass
    assert events == ["lifespan.startup", "lifespan.shutdown"]


def test_oversized_post_body_is_413(harness: Harness) -> None:
    response = harness.client.post("/api/auth/signout", content=b"x" * (70 * 1024),
                                   headers={"content-type": "application/x-www-form-urlencoded", "origin": ORIGIN})
    assert response.status_code == 413


def test_wrapped_app_post_body_untouched(harness: Harness) -> None:
    response = harness.client.post("/echo", content=b"payload")
    assert response.status_code == 200


def test_cold_concurrent_requests_fetch_discovery_and_jwks_once(fake: FakeLogto, clock: Clock) -> None:
    inner = fake.transport()

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.02)
        return inner.handle_request(request)

    config = config_for(fake)
    app = LogtoASGIMiddleware(Starlette(), config, http_client=httpx.AsyncClient(transport=httpx.MockTransport(slow)),
                              clock=clock)

    async def run() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as client:
            responses = await asyncio.gather(*(client.get("/api/auth/signin") for _ in range(50)))
        return [r.status_code for r in responses]

    assert asyncio.run(run()) == [302] * 50
    assert fake.counts["discovery"] == 1


def test_discovery_is_cached_and_a_failed_refetch_serves_the_old_copy(harness: Harness) -> None:
    harness.start_sign_in()
    harness.start_sign_in()
    assert harness.fake.counts["discovery"] == 1
    harness.clock.advance(3601)  # past the cache TTL
    harness.fake.outage.add("discovery")
    response = harness.start_sign_in()
    assert response.status_code == 302 and harness.fake.issuer in response.headers["location"]
    assert harness.fake.counts["discovery"] == 2


def test_provider_down_at_first_sign_in_is_503_page(harness: Harness) -> None:
    harness.fake.outage.add("discovery")
    response = harness.start_sign_in()
    assert response.status_code == 302
    assert response.headers["location"].endswith("/api/auth/error?error=ProviderUnavailable")
    page = harness.client.get(response.headers["location"])
    assert page.status_code == 503 and "cannot be reached" in page.text


@pytest.mark.parametrize("error", ["access_denied", "server_error"])
def test_provider_error_on_callback_lands_on_error_page(harness: Harness, error: str) -> None:
    harness.start_sign_in()
    response = harness.client.get("/api/auth/callback/logto", params={"error": error, "state": "x"})
    code = "AccessDenied" if error == "access_denied" else "OAuthCallbackError"
    assert response.headers["location"].endswith(f"/api/auth/error?error={code}")
    page = harness.client.get(response.headers["location"])
    assert page.status_code == (403 if code == "AccessDenied" else 400)
    assert harness.me()["authenticated"] is False


def test_cookie_split_over_several_headers_is_joined(fake: FakeLogto) -> None:
    """HTTP/2 servers may hand each cookie over as a header of its own."""
    config = config_for(fake)

    async def who(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.user.display_name or "-")

    app = LogtoASGIMiddleware(Starlette(routes=[Route("/", who)]), config, http_client=fake.async_httpx_client())
    cookie = make_session_cookie(config, {"sub": "u", "name": "Ada"})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "path": "/", "scheme": "http", "query_string": b"",
             "headers": [(b"host", b"localhost:3000"), (b"cookie", b"theme=dark"),
                         (b"cookie", cookie.encode()), (b"cookie", b"lang=fr")]}
    asyncio.run(app(scope, receive, send))
    assert sent[-1]["body"] == b"Ada"
    scope["headers"] = [(b"host", b"localhost:3000"), (b"cookie", b"theme=dark"), (b"cookie", b"lang=fr")]
    asyncio.run(app(scope, receive, send))
    assert sent[-1]["body"] == b"-"



def test_cookies_are_added_to_a_copy_of_the_apps_start_message(fake: FakeLogto) -> None:
    """An app may send the same message dict on every response: another request's Set-Cookie
    must never end up in it."""
    config = config_for(fake)
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
    original = [*start["headers"]]  # type: ignore[misc]

    async def constant(scope: Any, receive: Any, send: Any) -> None:
        await send(start)
        await send({"type": "http.response.body", "body": b"ok"})

    app = LogtoASGIMiddleware(constant, config, http_client=fake.async_httpx_client())
    tampered = make_session_cookie(config, {"sub": "u"})[:-4] + "AAAA"

    def headers_of(cookie: str | None) -> list[tuple[bytes, bytes]]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        raw = [(b"host", b"localhost:3000")] + ([(b"cookie", cookie.encode())] if cookie else [])
        scope = {"type": "http", "method": "GET", "path": "/", "scheme": "http", "query_string": b"", "headers": raw}
        asyncio.run(app(scope, receive, send))
        return list(sent[0]["headers"])

    cleared = headers_of(tampered)
    assert any(name == b"set-cookie" for name, _ in cleared)  # the forged cookie is cleared
    assert headers_of(None) == original  # the next visitor gets none of it
    assert start["headers"] == original
