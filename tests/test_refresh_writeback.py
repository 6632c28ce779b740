"""No refresh where its result cannot be written back: an Auth.js session sent as a bearer
token, a websocket, a response that has started. Logto rotates refresh tokens and revokes the
grant when a spent one comes back, so a refresh whose rotated token is thrown away ends the
session on the next request. The current token is served instead, and `session.error` says so."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Clock, Harness
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from logto_middleware import AccessTokenError, MemoryStore
from logto_middleware._sessions.state import REFRESH_DEFERRED
from logto_middleware.testing import FakeLogto


@pytest.fixture
def fake(clock: Clock) -> FakeLogto:
    return FakeLogto(clock=clock, rotate_refresh_token="always")


def due(fake: FakeLogto, clock: Clock) -> None:
    clock.advance(fake.access_token_ttl - 30)  # inside the 60 s leeway, not expired yet


def test_authjs_bearer_request_does_not_refresh(kind: str, fake: FakeLogto, clock: Clock) -> None:
    harness = Harness(kind, fake, clock, session_format="authjs")
    harness.sign_in("alice")
    jwe = harness.client.cookies["authjs.session-token"]
    before = harness.me()["access_token"]
    due(fake, clock)
    api = harness.browser()  # a cross-origin API caller: the JWE as a bearer token, no cookie
    body = api.get("/", headers={"authorization": f"Bearer {jwe}"}).json()
    assert body["authenticated"] and body["access_token"] == before and body["error"] == REFRESH_DEFERRED
    assert fake.counts["token:refresh_token"] == 0
    # The browser's next request with the cookie refreshes, with a refresh token nobody spent.
    after = harness.me()
    assert after["authenticated"] and after["access_token"] != before and after["error"] is None
    assert fake.counts["token:refresh_token"] == 1
    clock.advance(fake.access_token_ttl - 30)
    assert harness.me()["authenticated"]
    assert fake.counts["token:refresh_token"] == 2


def test_websocket_serves_the_current_token_without_refreshing(fake: FakeLogto, clock: Clock) -> None:
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            token: str | None = await websocket.auth.get_access_token()
        except AccessTokenError:
            token = None
        await websocket.send_json({"token": token, "error": websocket.auth.error})
        await websocket.close()

    harness = Harness("asgi", fake, clock, asgi_app=Starlette(routes=[WebSocketRoute("/ws", ws)]))
    harness.sign_in("alice")
    cookie = "; ".join(f"{name}={value}" for name, value in harness.client.cookies.items())
    due(fake, clock)
    with harness.client.websocket_connect("/ws", headers={"cookie": cookie}) as socket:
        first = socket.receive_json()
    assert first["token"] and first["error"] == REFRESH_DEFERRED
    clock.advance(60)  # now expired: nothing to serve
    with harness.client.websocket_connect("/ws", headers={"cookie": cookie}) as socket:
        assert socket.receive_json() == {"token": None, "error": REFRESH_DEFERRED}
    assert fake.counts["token:refresh_token"] == 0


def streaming_apps(clock: Clock, seconds: float) -> dict[str, Any]:
    """An ASGI and a WSGI app that start their response, then ask for the access token: on
    `/stream` a long stream later (`seconds` on the test's clock), elsewhere at once."""

    async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        if scope["path"] == "/stream":
            clock.advance(seconds)
        try:
            token = await scope["auth"].get_access_token()
        except AccessTokenError:
            token = "none"
        await send({"type": "http.response.body", "body": f"{token} {scope['auth'].error}".encode()})

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/stream":
            clock.advance(seconds)
        session = environ["logto.session"]
        try:
            token = session.get_access_token()
        except AccessTokenError:
            token = "none"
        return [f"{token} {session.error}".encode()]

    return {"asgi_app": asgi_app, "wsgi_app": wsgi_app}


@pytest.mark.parametrize(("seconds", "served"), [(3600 - 30, True), (3600 + 1, False)])  # FakeLogto: 1 h tokens
def test_no_refresh_after_the_response_started(kind: str, fake: FakeLogto, clock: Clock, seconds: int,
                                               served: bool) -> None:
    harness = Harness(kind, fake, clock, **streaming_apps(clock, seconds))
    harness.sign_in("alice")
    response = harness.client.get("/stream")
    token, error = response.text.split()
    assert (token != "none") is served and error == REFRESH_DEFERRED
    assert fake.counts["token:refresh_token"] == 0
    # The cookie still holds a refresh token nobody spent: the next request refreshes.
    token, error = harness.client.get("/next").text.split()
    assert token != "none" and error == "None"
    assert fake.counts["token:refresh_token"] == 1


def test_server_side_sessions_refresh_after_the_response_started(kind: str, fake: FakeLogto, clock: Clock) -> None:
    # The store keeps the rotated token, whatever the response carries.
    harness = Harness(kind, fake, clock, store=MemoryStore(), **streaming_apps(clock, fake.access_token_ttl - 30))
    harness.sign_in("alice")
    token, error = harness.client.get("/stream").text.split()
    assert token != "none" and error == "None"
    assert fake.counts["token:refresh_token"] == 1
    assert harness.client.get("/next").text.split() == [token, "None"]
