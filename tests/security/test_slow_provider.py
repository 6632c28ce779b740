"""A provider that answers too slowly or too much: every provider call ends by its deadline
(`http_deadline`) however slowly the bytes drip, and stops reading a body at its cap, on every
call (discovery, JWKS, token endpoint at the callback and at a refresh, revocation, userinfo,
bearer keys).

The deadline here is 0.5 s and a drip comes every 0.1 s, so each test costs about half a second;
a hostile body ends by itself after 3 s (or 32 MiB), so without the bounds a test fails rather
than hangs. The last tests use real sockets and the middlewares' own httpx clients.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from conftest import ORIGIN, SECRET, Clock, Harness, asgi_echo_app, wsgi_echo_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from logto_middleware import (
    BearerASGIMiddleware,
    BearerValidator,
    BearerWSGIMiddleware,
    LogtoASGIMiddleware,
    LogtoConfig,
    LogtoError,
    LogtoWSGIMiddleware,
)
from logto_middleware.testing import FakeLogto

from .security_support import (
    ERROR_STATUS,
    RoutedFake,
    SecretWatch,
    Trickle,
    assert_error_redirect,
    assert_rejected_callback,
    assert_signed_in,
    begin_sign_in,
    deleted_names,
    error_location,
)

DEADLINE = 0.5
# Generous: the bound is the deadline plus one drip; slow CI machines get a second more.
LATEST = DEADLINE + 1.0
DISCOVERY, JWKS, TOKEN = "/.well-known/openid-configuration", "/jwks", "/token"
REVOCATION, USERINFO = "/token/revocation", "/me"


def drip() -> Trickle:
    """One byte every 0.1 s: each read is quick, so only a deadline on the whole call ends it."""
    return Trickle(b" ", pause=0.1)


def flood() -> Trickle:
    """An endless body (well, 32 MiB) as fast as it can be read: only a cap ends it early."""
    return Trickle(b" " * 65536)


BODIES: dict[str, Callable[[], Trickle]] = {"drip": drip, "flood": flood}
# Past the deadline the provider is unavailable (503); past the cap it is broken (502).
OUTCOME = {"drip": "ProviderUnavailable", "flood": "Configuration"}


class Hostile:
    """Answers the requests to `endpoint` with a fresh hostile body while `active`, and keeps
    the bodies to count what was read from them."""

    def __init__(self, endpoint: str, body: Callable[[], Trickle]) -> None:
        self.endpoint, self.body = endpoint, body
        self.active = True
        self.bodies: list[Trickle] = []

    def __call__(self, request: httpx.Request) -> httpx.Response | None:
        if not self.active or not request.url.path.endswith(self.endpoint):
            return None
        body = self.body()
        self.bodies.append(body)
        return httpx.Response(200, headers={"content-type": "application/json"}, stream=body)

    def assert_cut_short(self, mode: str) -> None:
        """The hostile body was read only up to about the cap (never whole), or not past the deadline."""
        assert self.bodies, "the hostile endpoint was never called"
        for body in self.bodies:
            if mode == "flood":
                assert body.sent <= 1 << 20, f"{body.sent} bytes of a {body.size}-byte body were read"
            else:
                assert body.sent <= (DEADLINE + 0.5) / body.pause, body.sent


def hostile_site(kind: str, fake: FakeLogto, clock: Clock, watch: SecretWatch, hostile: Hostile) -> Harness:
    return watch.attach(Harness(kind, RoutedFake(fake, hostile), clock, http_deadline=DEADLINE))  # type: ignore[arg-type]


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def assert_error_page(site: Harness, response: httpx.Response, code: str) -> None:
    assert_error_redirect(response, code)
    page = site.client.get(response.headers["location"])
    assert page.status_code == ERROR_STATUS[code]


# -- through the middlewares, with a fake provider's hostile transport --------------------------

@pytest.mark.parametrize("mode", sorted(BODIES))
def test_sign_in_with_a_hostile_discovery_ends_on_time(kind: str, fake: FakeLogto, clock: Clock,
                                                        watch: SecretWatch, mode: str) -> None:
    hostile = Hostile(DISCOVERY, BODIES[mode])
    site = hostile_site(kind, fake, clock, watch, hostile)
    response, elapsed = timed(site.start_sign_in)
    assert elapsed < LATEST
    assert_error_page(site, response, OUTCOME[mode])
    hostile.assert_cut_short(mode)


@pytest.mark.parametrize("endpoint", [TOKEN, JWKS], ids=["token", "jwks"])
@pytest.mark.parametrize("mode", sorted(BODIES))
def test_callback_with_a_hostile_provider_ends_on_time(kind: str, fake: FakeLogto, clock: Clock,
                                                       watch: SecretWatch, mode: str, endpoint: str) -> None:
    hostile = Hostile(endpoint, BODIES[mode])
    site = hostile_site(kind, fake, clock, watch, hostile)
    callback, _ = begin_sign_in(site)
    response, elapsed = timed(lambda: site.client.get(callback))
    assert elapsed < LATEST
    assert_rejected_callback(site, response, OUTCOME[mode])
    hostile.assert_cut_short(mode)


@pytest.mark.parametrize("mode", sorted(BODIES))
def test_refresh_with_a_hostile_token_endpoint_ends_on_time_and_keeps_the_session(
        kind: str, fake: FakeLogto, clock: Clock, watch: SecretWatch, mode: str) -> None:
    hostile = Hostile(TOKEN, BODIES[mode])
    hostile.active = False
    site = hostile_site(kind, fake, clock, watch, hostile)
    assert_signed_in(site, site.sign_in("alice"))
    before = site.me()["access_token"]
    hostile.active = True
    clock.advance(fake.access_token_ttl - 30)  # inside the refresh leeway: the next request refreshes
    response, elapsed = timed(lambda: site.client.get("/"))
    assert elapsed < LATEST
    assert response.status_code == 200
    body = response.json()
    assert body["authenticated"] is True and body["access_token"] == before
    assert body["error"] == "RefreshAccessTokenError"
    assert not any(name.startswith("logto.session-token") for name in deleted_names(response))
    hostile.assert_cut_short(mode)
    # The provider recovers: the kept session refreshes once the back-off has passed.
    hostile.active = False
    clock.advance(10)
    body = site.me()
    assert body["authenticated"] is True and body["error"] is None and body["access_token"] != before


@pytest.mark.parametrize("mode", sorted(BODIES))
def test_sign_out_with_a_hostile_revocation_endpoint_signs_out_on_time(kind: str, fake: FakeLogto, clock: Clock,
                                                                      watch: SecretWatch, mode: str) -> None:
    # Revocation is best effort: past the deadline or the cap the sign-out goes on without it.
    hostile = Hostile(REVOCATION, BODIES[mode])
    site = hostile_site(kind, fake, clock, watch, hostile)
    assert_signed_in(site, site.sign_in("alice"))
    response, elapsed = timed(lambda: site.client.post("/api/auth/signout", headers={"origin": ORIGIN}))
    assert elapsed < LATEST
    assert response.status_code == 302
    assert response.headers["location"].startswith(fake.issuer + "/session/end?")
    assert "logto.session-token" in deleted_names(response)
    assert site.me()["authenticated"] is False
    hostile.assert_cut_short(mode)


async def _asgi_user_info(request: Request) -> JSONResponse:
    try:
        return JSONResponse(await request.auth.fetch_user_info())
    except LogtoError as exc:  # what an app does with a provider failure: its own answer
        return JSONResponse({"error": type(exc).__name__}, 503)


def _wsgi_user_info(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    try:
        status, body = "200 OK", environ["logto.session"].fetch_user_info()
    except LogtoError as exc:
        status, body = "503 Service Unavailable", {"error": type(exc).__name__}
    start_response(status, [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


@pytest.mark.parametrize("mode", sorted(BODIES))
def test_user_info_from_a_hostile_provider_fails_on_time(kind: str, fake: FakeLogto, clock: Clock,
                                                         watch: SecretWatch, mode: str) -> None:
    hostile = Hostile(USERINFO, BODIES[mode])
    site = watch.attach(Harness(kind, RoutedFake(fake, hostile), clock, http_deadline=DEADLINE,  # type: ignore[arg-type]
                                asgi_app=Starlette(routes=[Route("/userinfo", _asgi_user_info)]),
                                wsgi_app=_wsgi_user_info))
    hostile.active = False
    site.sign_in("alice")
    assert site.client.get("/userinfo").json()["sub"] == fake.user_claims("alice")["sub"]
    hostile.active = True
    response, elapsed = timed(lambda: site.client.get("/userinfo"))
    assert elapsed < LATEST
    assert response.status_code == 503
    assert response.json()["error"] == {"drip": "ProviderUnavailable", "flood": "ProviderError"}[mode]
    hostile.assert_cut_short(mode)


@pytest.mark.parametrize("mode", sorted(BODIES))
def test_bearer_keys_from_a_hostile_jwks_answer_503_on_time(kind: str, fake: FakeLogto, clock: Clock,
                                                            mode: str) -> None:
    api = "https://api.example.com"
    hostile = Hostile(JWKS, BODIES[mode])
    routed = RoutedFake(fake, hostile)
    validator = BearerValidator(fake.issuer, api, http_client=routed.httpx_client(),
                                async_http_client=routed.async_httpx_client(), clock=clock,
                                http_deadline=DEADLINE)
    now = int(clock())
    token = fake.sign_id_token({"iss": fake.issuer, "sub": "user-1", "aud": api, "exp": now + 3600, "iat": now,
                                "client_id": fake.client_id, "scope": "read:items"}, headers={"typ": "at+jwt"})
    client: httpx.Client
    if kind == "asgi":
        async def me(request: Request) -> JSONResponse:
            return JSONResponse({"id": request.user.identity})
        client = TestClient(BearerASGIMiddleware(Starlette(routes=[Route("/me", me)]), validator, required=True))
    else:
        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            start_response("200 OK", [("content-type", "text/plain")])
            return [b"ok"]
        client = httpx.Client(transport=httpx.WSGITransport(app=BearerWSGIMiddleware(app, validator, required=True)),
                              base_url="http://api.example.com")
    response, elapsed = timed(lambda: client.get("/me", headers={"authorization": f"Bearer {token}"}))
    assert elapsed < LATEST
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    hostile.assert_cut_short(mode)


# -- real sockets: a provider that drips, or stalls, on a local port ----------------------------

class _SlowProvider(BaseHTTPRequestHandler):
    """`/drip/...` answers one byte every 0.1 s; `/stall/...` answers its headers, then nothing.
    Either ends after 3 s."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.flush()
        end = time.monotonic() + 3.0
        try:
            while time.monotonic() < end:
                time.sleep(0.1)
                if self.path.startswith("/drip/"):
                    self.wfile.write(b" ")
                    self.wfile.flush()
        except OSError:
            pass  # the client gave up: what it should do
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def slow_provider() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowProvider)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("behaviour", ["drip", "stall"])
def test_real_sockets_sign_in_ends_by_the_deadline(kind: str, slow_provider: str, behaviour: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The middlewares' own httpx clients (http_timeout 5 s per read) against a real socket:
    a drip is cut by the deadline, a stall by a read timeout bounded by the deadline."""
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    config = LogtoConfig(issuer=f"{slow_provider}/{behaviour}/oidc", client_id="app", client_secret="app-secret",
                         secret=SECRET, http_timeout=5.0, http_deadline=DEADLINE)
    client: httpx.Client
    if kind == "asgi":
        client = TestClient(LogtoASGIMiddleware(asgi_echo_app(), config), base_url=ORIGIN,
                            follow_redirects=False)
    else:
        client = httpx.Client(transport=httpx.WSGITransport(app=LogtoWSGIMiddleware(wsgi_echo_app, config)),
                              base_url=ORIGIN, follow_redirects=False)
    response, elapsed = timed(lambda: client.get("/api/auth/signin"))
    assert elapsed < LATEST
    assert response.status_code == 302
    assert response.headers["location"] == error_location("ProviderUnavailable")
    assert client.get(response.headers["location"]).status_code == 503
