"""Refresh on each request: success, invalid_grant, outages, and concurrency."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import pytest
from conftest import SECRET, Clock, Harness, asgi_echo_app, wsgi_echo_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from logto_middleware import LogtoASGIMiddleware, LogtoConfig, LogtoWSGIMiddleware
from logto_middleware.flow import run_without_io
from logto_middleware.testing import FakeLogto


def expire_access_token(harness: Harness) -> None:
    harness.clock.advance(harness.fake.access_token_ttl - 30)  # inside the 60 s leeway


def test_refresh_before_expiry_writes_new_cookie(harness: Harness) -> None:
    harness.sign_in("alice")
    first = harness.me()["access_token"]
    expire_access_token(harness)
    response = harness.client.get("/")
    assert response.json()["access_token"] != first
    assert any(c.startswith("logto.session-token=") for c in response.headers.get_list("set-cookie"))
    assert harness.fake.counts["token:refresh_token"] == 1
    # The new cookie carries the new token: no second refresh.
    assert harness.me()["access_token"] == response.json()["access_token"]
    assert harness.fake.counts["token:refresh_token"] == 1


def test_no_refresh_while_token_is_fresh(harness: Harness) -> None:
    harness.sign_in("alice")
    for _ in range(3):
        harness.me()
    assert harness.fake.counts["token:refresh_token"] == 0


def test_logto_returns_same_refresh_token_later_refresh_still_reaches_provider(harness: Harness) -> None:
    # Logto keeps the refresh token while it is young: keyed by the refresh token alone, the second
    # refresh would be served the first result, with an expired access token.
    harness.sign_in("alice")
    tokens = []
    for _ in range(3):
        expire_access_token(harness)
        tokens.append(harness.me()["access_token"])
        harness.clock.advance(31)
    assert len(set(tokens)) == 3
    assert harness.fake.counts["token:refresh_token"] == 3


def test_invalid_grant_ends_the_session(harness: Harness) -> None:
    harness.sign_in("alice")
    harness.fake.token_response_hook = lambda body: httpx.Response(400, json={"error": "invalid_grant"})
    expire_access_token(harness)
    response = harness.client.get("/")
    assert response.json()["authenticated"] is False
    assert any(c.startswith("logto.session-token=;") and "Max-Age=0" in c
               for c in response.headers.get_list("set-cookie"))
    assert harness.me()["authenticated"] is False


@pytest.mark.parametrize("status", [500, 502, 503])
def test_provider_5xx_keeps_the_session(harness: Harness, status: int) -> None:
    harness.sign_in("alice")
    before = harness.me()["access_token"]
    harness.fake.fail_next("token", status=status)
    expire_access_token(harness)
    body = harness.me()
    assert body["authenticated"] is True
    assert body["access_token"] == before
    assert body["error"] == "RefreshAccessTokenError"
    harness.clock.advance(10)  # past the back-off: the next request tries again and succeeds
    body = harness.me()
    assert body["authenticated"] is True and body["error"] is None
    assert body["access_token"] != before


def test_requests_during_the_back_off_keep_the_session_without_a_grant(harness: Harness) -> None:
    harness.sign_in("alice")
    harness.me()  # decoded once: the requests below take the quick path
    harness.fake.fail_next("token", status=503)
    expire_access_token(harness)
    assert harness.me()["error"] == "RefreshAccessTokenError"
    grants = harness.fake.counts["token:refresh_token"]
    harness.clock.advance(2)  # inside the 5 s back-off
    for _ in range(2):
        body = harness.me()
        assert body["authenticated"] is True and body["error"] == "RefreshAccessTokenError"
    assert harness.fake.counts["token:refresh_token"] == grants


def _refresh_warnings(caplog: pytest.LogCaptureFixture) -> int:
    return sum("refresh failed" in r.getMessage() for r in caplog.records)


def test_an_outage_logs_one_line_per_failed_grant_not_per_request(harness: Harness,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    harness.sign_in("alice")
    harness.me()
    expire_access_token(harness)
    with caplog.at_level("INFO", logger="logto_middleware"):
        harness.fake.fail_next("token", status=503)
        for _ in range(3):  # the failure, then two requests during its back-off
            assert harness.me()["error"] == "RefreshAccessTokenError"
        assert _refresh_warnings(caplog) == 1
        harness.clock.advance(10)  # past the back-off: a new grant, failing again, is a new line
        harness.fake.fail_next("token", status=503)
        assert harness.me()["error"] == "RefreshAccessTokenError"
        assert _refresh_warnings(caplog) == 2


def _slow_grants(fake: FakeLogto) -> httpx.Client:
    """A client to the fake whose token requests take 50 ms: concurrent threads all arrive during one."""
    inner = fake.transport()

    def slow(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            threading.Event().wait(0.05)
        return inner.handle_request(request)

    return httpx.Client(transport=httpx.MockTransport(slow))


def _thread_storm(middleware: LogtoWSGIMiddleware, cookie: str, n: int) -> list[httpx.Response]:
    """`n` threads released together, each sending one request with `cookie`."""
    gate = threading.Barrier(n, timeout=5)
    responses: list[httpx.Response] = []

    def one() -> None:
        client = httpx.Client(transport=httpx.WSGITransport(app=middleware), base_url="http://localhost:3000")
        gate.wait()
        responses.append(client.get("/", headers={"cookie": cookie}))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


def _traceback_length(exc: BaseException) -> int:
    length, tb = 0, exc.__traceback__
    while tb is not None:
        length, tb = length + 1, tb.tb_next
    return length


def test_a_shared_failure_keeps_no_growing_traceback(fake: FakeLogto, clock: Clock,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The threads that waited on a failed grant, and the requests of its back-off, raise one
    exception object: raised as is, each would add its frames to its traceback and keep them alive."""
    config = LogtoConfig(issuer=fake.issuer, client_id=fake.client_id, client_secret=fake.client_secret,
                         secret=SECRET)
    cookie = signed_in_cookie(fake, clock, config)
    clock.advance(fake.access_token_ttl)
    middleware = LogtoWSGIMiddleware(wsgi_echo_app, config, http_client=_slow_grants(fake), clock=clock)
    seen: list[Exception] = []
    failed = middleware.core.manager._refresh_failed

    def record(state: Any, data: Any, exc: Exception) -> Any:
        seen.append(exc)
        return failed(state, data, exc)

    monkeypatch.setattr(middleware.core.manager, "_refresh_failed", record)
    fake.fail_next("token", status=503)
    _thread_storm(middleware, cookie, 20)
    assert len(seen) == 20 and len({id(exc) for exc in seen}) == 1
    assert _traceback_length(seen[0]) < 20
    client = httpx.Client(transport=httpx.WSGITransport(app=middleware), base_url="http://localhost:3000")
    for _ in range(20):  # during the back-off
        assert client.get("/", headers={"cookie": cookie}).json()["error"] == "RefreshAccessTokenError"
    assert len(seen) == 40 and len({id(exc) for exc in seen}) == 1
    assert fake.counts["token:refresh_token"] == 1
    assert _traceback_length(seen[0]) < 20


def test_provider_non_json_keeps_the_session(harness: Harness) -> None:
    harness.sign_in("alice")
    harness.fake.token_response_hook = lambda body: httpx.Response(200, text="<html>oops</html>")
    expire_access_token(harness)
    body = harness.me()
    assert body["authenticated"] is True and body["error"] == "RefreshAccessTokenError"


class TimeoutTransport(httpx.MockTransport):
    """The fake, except that the token endpoint times out while `hang` is set."""

    def __init__(self, fake: FakeLogto) -> None:
        self.hang = False
        inner = fake.transport()

        def handler(request: httpx.Request) -> httpx.Response:
            if self.hang and request.url.path.endswith("/token"):
                raise httpx.ReadTimeout("timed out", request=request)
            return inner.handle_request(request)

        super().__init__(handler)


def make_pair(kind: str, fake: FakeLogto, clock: Clock, transport: httpx.MockTransport) -> Harness:
    harness = Harness(kind, fake, clock)
    if kind == "asgi":
        middleware = LogtoASGIMiddleware(asgi_echo_app(), harness.config,
                                         http_client=httpx.AsyncClient(transport=transport), clock=clock)
        from starlette.testclient import TestClient
        harness.middleware = middleware
        harness.client = TestClient(middleware, base_url="http://localhost:3000", follow_redirects=False)
    else:
        wsgi = LogtoWSGIMiddleware(wsgi_echo_app, harness.config, http_client=httpx.Client(transport=transport),
                                   clock=clock)
        harness.middleware = wsgi
        harness.client = httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="http://localhost:3000",
                                      follow_redirects=False)
    return harness


def test_provider_timeout_keeps_the_session(kind: str, fake: FakeLogto, clock: Clock) -> None:
    transport = TimeoutTransport(fake)
    harness = make_pair(kind, fake, clock, transport)
    harness.sign_in("alice")
    transport.hang = True
    expire_access_token(harness)
    body = harness.me()
    assert body["authenticated"] is True and body["error"] == "RefreshAccessTokenError"
    transport.hang = False
    clock.advance(10)
    assert harness.me()["error"] is None


def test_request_with_just_rotated_tokens_gets_the_new_ones(kind: str, fake: FakeLogto, clock: Clock) -> None:
    fake.rotate_refresh_token = "always"
    harness = Harness(kind, fake, clock)
    harness.sign_in("alice")
    old_cookies = dict(harness.client.cookies)
    expire_access_token(harness)
    refreshed = harness.me()["access_token"]
    # A parallel request that left before the new cookie arrived still carries the old one.
    harness.client.cookies.clear()
    for name, value in old_cookies.items():
        harness.client.cookies.set(name, value)
    body = harness.me()
    assert body["authenticated"] is True
    assert body["access_token"] == refreshed
    assert fake.counts["token:refresh_token"] == 1


@pytest.mark.parametrize("decoded_before", [True, False], ids=["quick-path", "full-path"])
def test_a_bug_during_a_refresh_fails_closed_and_keeps_the_cookie(kind: str, fake: FakeLogto, clock: Clock,
                                                                   caplog: pytest.LogCaptureFixture,
                                                                   decoded_before: bool) -> None:
    """Not a provider failure (those keep the session): an exception nobody expected. The request
    goes on anonymous, writes no cookie, and the next request is signed in again."""
    harness = Harness(kind, fake, clock)
    harness.sign_in("alice")
    if decoded_before:
        harness.me()  # the middleware has decoded this cookie: the next request takes the quick path
    else:
        cookies = dict(harness.client.cookies)
        harness = Harness(kind, fake, clock)  # a middleware that never saw the cookie
        for name, value in cookies.items():
            harness.client.cookies.set(name, value)

    def bug(body: Any) -> httpx.Response:
        raise RuntimeError("a bug in the transport")

    fake.token_response_hook = bug
    expire_access_token(harness)
    with caplog.at_level("ERROR", logger="logto_middleware"):
        response = harness.client.get("/")
    assert response.status_code == 200
    assert response.json()["authenticated"] is False
    assert response.headers.get_list("set-cookie") == []
    assert any("logto_middleware failed on GET /" in r.getMessage() for r in caplog.records)
    fake.token_response_hook = None
    assert harness.me()["authenticated"] is True
    assert fake.counts["token:refresh_token"] >= 1


def test_a_request_just_after_a_refresh_gets_its_tokens_and_cookie(kind: str, fake: FakeLogto, clock: Clock) -> None:
    """It left before the refreshed cookie came back, and arrives a few seconds later (so nothing
    is shared with the requests of the refresh's second): it writes the refreshed session too."""
    harness = Harness(kind, fake, clock)
    harness.sign_in("alice")
    harness.me()
    old_cookies = dict(harness.client.cookies)
    expire_access_token(harness)
    refreshed = harness.me()["access_token"]
    clock.advance(3)
    harness.client.cookies.clear()
    # The old cookie as an explicit header: set into the jar by hand it would sit beside the one
    # the response writes (another domain key), and two session cookies are trusted neither.
    old_header = "; ".join(f"{name}={value}" for name, value in old_cookies.items())
    response = harness.client.get("/", headers={"cookie": old_header})
    assert response.json()["access_token"] == refreshed
    assert any(c.startswith("logto.session-token=") for c in response.headers.get_list("set-cookie"))
    assert harness.me()["access_token"] == refreshed  # the cookie it wrote holds the new tokens
    assert fake.counts["token:refresh_token"] == 1


# -- concurrency --------------------------------------------------------------------------


def signed_in_cookie(fake: FakeLogto, clock: Clock, config: LogtoConfig) -> str:
    harness = Harness("wsgi", fake, clock, secret=config.secrets[0])
    harness.sign_in("alice")
    return "; ".join(f"{k}={v}" for k, v in harness.client.cookies.items())


def test_concurrent_asgi_requests_refresh_once(fake: FakeLogto, clock: Clock) -> None:
    fake.rotate_refresh_token = "always"
    config = LogtoConfig(issuer=fake.issuer, client_id=fake.client_id, client_secret=fake.client_secret,
                         secret=SECRET)
    cookie = signed_in_cookie(fake, clock, config)
    clock.advance(fake.access_token_ttl)
    inner = fake.transport()

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)  # the grant takes a while: every request arrives during it
        return inner.handle_request(request)

    middleware = LogtoASGIMiddleware(asgi_echo_app(), config,
                                     http_client=httpx.AsyncClient(transport=httpx.MockTransport(slow)), clock=clock)

    async def one() -> tuple[dict[str, Any], list[str]]:
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost:3000") as client:
            response = await client.get("/", headers={"cookie": cookie})
            return response.json(), response.headers.get_list("set-cookie")

    async def many() -> list[tuple[dict[str, Any], list[str]]]:
        return await asyncio.gather(*(one() for _ in range(50)))

    results = asyncio.run(many())
    assert all(r["authenticated"] and r["error"] is None for r, _ in results)
    assert len({r["access_token"] for r, _ in results}) == 1
    assert fake.counts["token:refresh_token"] == 1
    # Every request writes the refreshed session back.
    for body, set_cookies in results:
        assert len(set_cookies) == 1
        name, _, rest = set_cookies[0].partition("=")
        data = run_without_io(middleware.core.manager.sessions.load(rest.split(";", 1)[0], name))
        assert data is not None and data.access_token == body["access_token"]


def test_concurrent_wsgi_threads_refresh_once(fake: FakeLogto, clock: Clock) -> None:
    fake.rotate_refresh_token = "always"
    config = LogtoConfig(issuer=fake.issuer, client_id=fake.client_id, client_secret=fake.client_secret,
                         secret=SECRET)
    cookie = signed_in_cookie(fake, clock, config)
    clock.advance(fake.access_token_ttl)
    gate = threading.Barrier(20, timeout=5)
    middleware = LogtoWSGIMiddleware(wsgi_echo_app, config, http_client=_slow_grants(fake), clock=clock)
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def one() -> None:
        client = httpx.Client(transport=httpx.WSGITransport(app=middleware), base_url="http://localhost:3000")
        gate.wait()
        body = client.get("/", headers={"cookie": cookie}).json()
        with lock:
            results.append(body)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 20
    assert all(r["authenticated"] and r["error"] is None for r in results)
    assert len({r["access_token"] for r in results}) == 1
    assert fake.counts["token:refresh_token"] == 1


def _storm_middleware(fake: FakeLogto, clock: Clock, config: LogtoConfig, app: Any) -> LogtoASGIMiddleware:
    inner = fake.transport()

    async def slow(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            await asyncio.sleep(0.05)  # every request of the storm arrives during the grant
        return inner.handle_request(request)

    return LogtoASGIMiddleware(app, config, http_client=httpx.AsyncClient(transport=httpx.MockTransport(slow)),
                               clock=clock)


async def _storm(middleware: LogtoASGIMiddleware, cookie: str, paths: list[str]) -> list[httpx.Response]:
    async def one(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost:3000") as client:
            return await client.get(path, headers={"cookie": cookie})

    return list(await asyncio.gather(*(one(path) for path in paths)))


def _failing_grants(fake: FakeLogto, failure: str) -> None:
    if failure == "outage":
        fake.fail_next("token", status=503)
    elif failure == "invalid_grant":
        fake.token_response_hook = lambda body: httpx.Response(400, json={"error": "invalid_grant"})
    else:
        def bug(body: Any) -> httpx.Response:
            raise RuntimeError("a bug in the transport")

        fake.token_response_hook = bug


def _check_logged_once(failure: str, responses: list[httpx.Response], caplog: pytest.LogCaptureFixture) -> None:
    bodies = [r.json() for r in responses]
    messages = [r.getMessage() for r in caplog.records]
    if failure == "outage":
        assert [b["error"] for b in bodies] == ["RefreshAccessTokenError"] * len(bodies)
        assert _refresh_warnings(caplog) == 1
    else:
        assert not any(b["authenticated"] for b in bodies)
        wanted = "refresh rejected" if failure == "invalid_grant" else "logto_middleware failed on GET /"
        assert sum(wanted in m for m in messages) == 1


@pytest.mark.parametrize("stack", ["asgi-tasks", "wsgi-threads"])
@pytest.mark.parametrize("failure", ["outage", "invalid_grant", "bug"])
def test_requests_waiting_on_a_failed_refresh_log_it_once(fake: FakeLogto, clock: Clock,
                                                         caplog: pytest.LogCaptureFixture, failure: str,
                                                         stack: str) -> None:
    config = LogtoConfig(issuer=fake.issuer, client_id=fake.client_id, client_secret=fake.client_secret,
                         secret=SECRET)
    cookie = signed_in_cookie(fake, clock, config)
    clock.advance(fake.access_token_ttl)
    _failing_grants(fake, failure)
    with caplog.at_level("INFO", logger="logto_middleware"):
        if stack == "asgi-tasks":
            middleware = _storm_middleware(fake, clock, config, asgi_echo_app())
            responses = asyncio.run(_storm(middleware, cookie, ["/"] * 30))
        else:
            wsgi = LogtoWSGIMiddleware(wsgi_echo_app, config, http_client=_slow_grants(fake), clock=clock)
            responses = _thread_storm(wsgi, cookie, 20)
    assert fake.counts["token:refresh_token"] == 1
    _check_logged_once(failure, responses, caplog)


@pytest.mark.parametrize("later", [3600, 25 * 3600], ids=["refresh", "refresh-and-roll"])
def test_requests_waiting_on_one_refresh_all_write_its_outcome(fake: FakeLogto, clock: Clock, later: int) -> None:
    config = LogtoConfig(issuer=fake.issuer, client_id=fake.client_id, client_secret=fake.client_secret,
                         secret=SECRET)
    cookie = signed_in_cookie(fake, clock, config)
    clock.advance(later)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["auth"].access_token.encode()})

    middleware = _storm_middleware(fake, clock, config, app)
    responses = asyncio.run(_storm(middleware, cookie, ["/"] * 30))
    assert fake.counts["token:refresh_token"] == 1
    tokens = {r.text for r in responses}
    assert len(tokens) == 1
    # Every response carries the refreshed session, whichever request the browser keeps last.
    for response in responses:
        written = response.headers.get_list("set-cookie")
        assert len(written) == 1
        name, _, rest = written[0].partition("=")
        data = run_without_io(middleware.core.manager.sessions.load(rest.split(";", 1)[0], name))
        assert data is not None and data.access_token in tokens
        assert data.expires_at == int(clock()) + config.session_max_age or later < config.session_update_age


def test_a_request_that_changes_its_session_after_a_shared_refresh_writes_its_own_cookie(
        fake: FakeLogto, clock: Clock) -> None:
    api = "https://api.example.com"
    fake.resources[api] = ["read:items"]
    config = LogtoConfig(issuer=fake.issuer, client_id=fake.client_id, client_secret=fake.client_secret,
                         secret=SECRET, resources=[api], scopes="openid offline_access profile email read:items")
    harness = Harness("wsgi", fake, clock, secret=SECRET, resources=[api],
                      scopes="openid offline_access profile email read:items")
    harness.sign_in("alice")
    cookie = "; ".join(f"{k}={v}" for k, v in harness.client.cookies.items())
    clock.advance(fake.access_token_ttl)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        token = ""
        if scope["path"] == "/api-call":  # after the session's own refresh, a token for the API
            token = await scope["auth"].get_access_token(resource=api)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": token.encode()})

    middleware = _storm_middleware(fake, clock, config, app)
    paths = ["/"] * 5 + ["/api-call"] + ["/"] * 5
    responses = asyncio.run(_storm(middleware, cookie, paths))
    assert fake.counts["token:refresh_token"] == 2  # the session's own grant, then the API's
    api_response = responses[paths.index("/api-call")]
    assert api_response.text

    def session_written(response: httpx.Response) -> Any:
        written = response.headers.get_list("set-cookie")
        assert len(written) == 1
        name, _, rest = written[0].partition("=")
        return run_without_io(middleware.core.manager.sessions.load(rest.split(";", 1)[0], name))

    # The others write the refreshed session without the API's token: theirs did not change after.
    for i, response in enumerate(responses):
        if paths[i] == "/":
            other = session_written(response)
            assert other is not None and other.resource_token(api) is None
    data = session_written(api_response)
    assert data is not None and data.resource_token(api) is not None
    assert data.resource_token(api)[0] == api_response.text  # type: ignore[index]


async def _names_asgi(request: Request) -> JSONResponse:
    auth = request.auth
    return JSONResponse({"user": request.user.name, "session_user": getattr(getattr(auth, "user", None), "name", None)})


def _names_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = environ["logto.session"]
    body = {"user": environ["logto.user"].name, "session_user": session.user.name if session is not None else None}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


@pytest.mark.parametrize("later", [3600 + 5, 25 * 3600], ids=["refresh", "refresh-and-roll"])
def test_the_user_after_a_refresh_is_the_one_of_the_new_id_token(kind: str, fake: FakeLogto, clock: Clock,
                                                                   later: int) -> None:
    harness = Harness(kind, fake, clock, asgi_app=Starlette(routes=[Route("/", _names_asgi)]), wsgi_app=_names_wsgi)
    harness.sign_in("alice")
    assert harness.client.get("/").json() == {"user": "Alice", "session_user": "Alice"}
    fake.users["alice"] = {"name": "Alice Renamed"}  # the provider's profile changed since the sign-in
    clock.advance(later)
    response = harness.client.get("/")
    assert fake.counts["token:refresh_token"] == 1
    assert response.json() == {"user": "Alice Renamed", "session_user": "Alice Renamed"}
    assert response.headers.get("set-cookie")
