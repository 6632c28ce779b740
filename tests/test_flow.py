"""The drivers' single-flight (`Shared`): one run per key, every follower gets its result or its
error, and no follower can hang or disturb the others."""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logto_middleware.errors import ProviderError, ProviderUnavailable
from logto_middleware.flow import DEFAULT_MAX_BYTES, AsyncDriver, Fetch, Flow, Shared, Sleep, SyncDriver


class Boom(Exception):
    pass


def counted(calls: list[int], *, seconds: float, fail: bool = False) -> Flow[str]:
    calls.append(1)
    yield Sleep(seconds)
    if fail:
        raise Boom("leader failed")
    return f"result {len(calls)}"


def shared(calls: list[int], *, seconds: float = 0.05, fail: bool = False) -> Flow[str]:
    result: str = yield Shared("key", lambda: counted(calls, seconds=seconds, fail=fail))
    return result


def sync_driver() -> SyncDriver:
    return SyncDriver(httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500))))


def async_driver() -> AsyncDriver:
    return AsyncDriver(httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500))))


def run_threads(driver: SyncDriver, n: int, **kwargs: Any) -> list[object]:
    results: list[object] = []
    lock = threading.Lock()
    gate = threading.Barrier(n, timeout=5)
    calls: list[int] = kwargs.pop("calls")

    def one() -> None:
        gate.wait()
        try:
            outcome: object = driver.run(shared(calls, **kwargs))
        except Exception as exc:  # the outcome under test
            outcome = exc
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a follower was never woken"
    return results


def test_sync_followers_all_get_the_one_result() -> None:
    calls: list[int] = []
    results = run_threads(sync_driver(), 64, calls=calls)
    assert calls == [1]
    assert results == ["result 1"] * 64


def test_sync_followers_all_get_the_leaders_error() -> None:
    calls: list[int] = []
    results = run_threads(sync_driver(), 32, calls=calls, fail=True)
    assert calls == [1]
    assert len(results) == 32 and all(isinstance(r, Boom) for r in results)


def test_sync_flight_ends_with_its_leader() -> None:
    driver, calls = sync_driver(), []
    assert driver.run(shared(calls, seconds=0)) == "result 1"
    assert driver.run(shared(calls, seconds=0)) == "result 2"  # a new flight, not a stale result


async def gather_shared(driver: AsyncDriver, calls: list[int], n: int, **kwargs: Any) -> list[Any]:
    return await asyncio.gather(*(driver.run(shared(calls, **kwargs)) for _ in range(n)), return_exceptions=True)


def test_async_followers_all_get_the_one_result() -> None:
    calls: list[int] = []
    results = asyncio.run(gather_shared(async_driver(), calls, 100))
    assert calls == [1]
    assert results == ["result 1"] * 100


def test_async_followers_all_get_the_leaders_error() -> None:
    calls: list[int] = []
    results = asyncio.run(gather_shared(async_driver(), calls, 20, fail=True))
    assert calls == [1]
    assert all(isinstance(r, Boom) for r in results)


def test_async_cancelled_follower_leaves_the_others_alone() -> None:
    driver, calls = async_driver(), []

    async def scenario() -> tuple[list[Any], bool]:
        leader = asyncio.ensure_future(driver.run(shared(calls)))
        await asyncio.sleep(0)
        followers = [asyncio.ensure_future(driver.run(shared(calls))) for _ in range(5)]
        await asyncio.sleep(0.01)
        followers[0].cancel()
        results = await asyncio.gather(leader, *followers[1:])
        return results, followers[0].cancelled()

    results, cancelled = asyncio.run(scenario())
    assert cancelled
    assert results == ["result 1"] * 5
    assert calls == [1]


def test_async_cancelled_leader_does_not_leave_followers_waiting() -> None:
    driver, calls = async_driver(), []

    async def scenario() -> list[Any]:
        leader = asyncio.ensure_future(driver.run(shared(calls)))
        await asyncio.sleep(0)
        followers = [asyncio.ensure_future(driver.run(shared(calls))) for _ in range(3)]
        await asyncio.sleep(0.01)
        leader.cancel()
        return await asyncio.wait_for(asyncio.gather(*followers, return_exceptions=True), timeout=5)

    results = asyncio.run(scenario())
    assert all(isinstance(r, ProviderUnavailable) for r in results)


def test_async_flight_of_a_closed_loop_is_not_followed() -> None:
    driver, calls = async_driver(), []

    abandoned: list[asyncio.Future[str]] = []

    async def abandon() -> None:
        abandoned.append(asyncio.ensure_future(driver.run(shared(calls, seconds=60))))
        await asyncio.sleep(0.01)  # the flight is running when this loop goes away

    loop = asyncio.new_event_loop()
    loop.run_until_complete(abandon())
    loop.close()
    # A new loop leads its own flight instead of waiting for the dead one.
    assert asyncio.run(asyncio.wait_for(driver.run(shared(calls, seconds=0)), timeout=5)) == "result 2"


@pytest.mark.parametrize("n", [1, 2, 10])
def test_async_small_flights(n: int) -> None:
    calls: list[int] = []
    assert asyncio.run(gather_shared(async_driver(), calls, n)) == ["result 1"] * n


def _parse_qsl_first_values(text: str) -> dict[str, str]:
    from urllib.parse import parse_qsl

    expected: dict[str, str] = {}
    for key, value in parse_qsl("&".join(text.split("&", 100)[:100]), keep_blank_values=True):
        expected.setdefault(key, value)
    return expected


@pytest.mark.parametrize("text", ["", "a", "a=", "=b", "a=1&a=2", "x=%41%zz&y=b+c", "&&k=v&", "k=%E2%82%AC",
                                  "n=" + "&n=".join(str(i) for i in range(150)), "p=a%2Bb+c&q", "é=è&;=x",
                                  "%", "a%2", "+=+", "a=%C3", "k=v=w", "a+b=c%20d&a b=2", "x=%FF%FE", "%61=1&a=2",
                                  "code=abc&state=xyz&iss=https%3A%2F%2Fk8x2qp.logto.app%2Foidc",
                                  "v=" + "%41+" * 300 + "&" + "%42" * 200 + "=w"])
def test_query_parsing_matches_parse_qsl_first_values(text: str) -> None:
    from logto_middleware._messages import Request

    assert Request("GET", "/", text, {}, "https").query == _parse_qsl_first_values(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab=&%+2F0C3é; ", max_size=40))
def test_query_parsing_matches_parse_qsl_on_any_text(text: str) -> None:
    from logto_middleware._messages import Request

    assert Request("GET", "/", text, {}, "https").query == _parse_qsl_first_values(text)


@pytest.mark.parametrize("value", ["abc-DEF_123.~", "http://localhost:3000/api/auth/callback/logto", "a b+c",
                                   "sec#ret:x", "é", ""])
def test_form_body_is_urlencode(value: str) -> None:
    from urllib.parse import urlencode

    from logto_middleware._protocol.oauth import form_body

    form = {"grant_type": "authorization_code", "code": value, "redirect uri": value}
    assert form_body(form) == urlencode(form).encode()
    assert form_body(list(form.items())) == urlencode(list(form.items())).encode()


def test_token_requests_do_not_share_their_headers() -> None:
    """The grant headers are built once per client; each request gets its own copy."""
    from logto_middleware._protocol.oauth import token_grant

    first = next(token_grant("https://issuer.example/token", "id", "se#cret:1", {"grant_type": "x"}))
    second = next(token_grant("https://issuer.example/token", "id", "se#cret:1", {"grant_type": "y"}))
    assert isinstance(first, Fetch) and isinstance(second, Fetch)
    first, second = first.request, second.request
    first.headers["Authorization"] = "Bearer changed"
    first.headers["X-Extra"] = "1"
    assert second.headers["Authorization"].startswith("Basic ")
    assert "X-Extra" not in second.headers
    assert second.headers["Content-Length"] == str(len(b"grant_type=y"))
    third = next(token_grant("https://issuer.example/token", "id", "se#cret:1", {"grant_type": "z"}))
    assert isinstance(third, Fetch)
    third = third.request
    assert third.headers["Authorization"] == second.headers["Authorization"] and "X-Extra" not in third.headers


# -- Fetch: the body is streamed under a cap, and the flow gets it decoded ----------------------

def _fetch_drivers(handler: Any) -> tuple[SyncDriver, AsyncDriver]:
    transport = httpx.MockTransport(handler)
    return SyncDriver(httpx.Client(transport=transport)), AsyncDriver(httpx.AsyncClient(transport=transport))


def _run_both(handler: Any, make_flow: Any) -> list[Any]:
    """The outcome of `make_flow()` under each driver: its result, or the exception it raised."""
    sync, async_ = _fetch_drivers(handler)
    outcomes: list[Any] = []
    for run in (sync.run, lambda flow: asyncio.run(async_.run(flow))):
        try:
            outcomes.append(run(make_flow()))
        except Exception as exc:  # the outcome under test
            outcomes.append(exc)
    return outcomes


def _fetch(max_bytes: int = 1024) -> Flow[httpx.Response]:
    response: httpx.Response = yield Fetch(httpx.Request("GET", "https://issuer.example/doc"), max_bytes)
    return response


def test_a_compressed_body_reaches_the_flow_decoded() -> None:
    body = b'{"issuer": "https://issuer.example"}'

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=gzip.compress(body),
                              headers={"content-encoding": "gzip", "x-kept": "1", "content-type": "application/json"})

    for response in _run_both(handler, _fetch):
        assert isinstance(response, httpx.Response), response
        assert response.status_code == 200 and response.content == body
        assert response.json() == {"issuer": "https://issuer.example"}
        assert response.headers["x-kept"] == "1" and "content-encoding" not in response.headers


def test_the_cap_counts_the_decoded_bytes() -> None:
    # 2 MB of zeros are a 2 KB gzip body: the cap applies to what it expands to.
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=gzip.compress(b"0" * 2_000_000), headers={"content-encoding": "gzip"})

    for outcome in _run_both(handler, lambda: _fetch(max_bytes=64 * 1024)):
        assert isinstance(outcome, ProviderError), outcome
        assert "more than 65536 bytes" in str(outcome)


def test_a_bare_request_is_a_fetch_with_the_default_cap() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * (DEFAULT_MAX_BYTES + 1))

    def bare() -> Flow[httpx.Response]:
        response: httpx.Response = yield httpx.Request("GET", "https://issuer.example/doc")
        return response

    assert all(isinstance(outcome, ProviderError) for outcome in _run_both(handler, bare))
    small = _run_both(lambda request: httpx.Response(204), bare)
    assert all(isinstance(outcome, httpx.Response) and outcome.status_code == 204 for outcome in small)


def test_each_step_of_a_fetch_is_bounded_by_the_deadline() -> None:
    """The per-step timeouts httpx applies (connect, read...) never exceed the driver's deadline."""
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200)

    transport = httpx.MockTransport(handler)
    SyncDriver(httpx.Client(transport=transport, timeout=5.0), deadline=0.25).run(_fetch())
    asyncio.run(AsyncDriver(httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(0.1, read=None)),
                            deadline=0.25).run(_fetch()))
    assert seen == [{"connect": 0.25, "read": 0.25, "write": 0.25, "pool": 0.25},
                    {"connect": 0.1, "read": 0.25, "write": 0.1, "pool": 0.1}]


def test_a_driver_given_no_client_makes_one_with_its_timeout_on_first_use() -> None:
    """The middlewares give their drivers no client: it is made (and httpx imported) for the first
    provider call, with the configured timeout; once, however many threads ask at the same time."""
    sync, async_ = SyncDriver(timeout=2.5), AsyncDriver(timeout=2.5)
    start = threading.Barrier(8)
    clients: list[httpx.Client] = []

    def first_use() -> None:
        start.wait()
        clients.append(sync.client)

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(client) for client in clients}) == 1 and clients[0] is sync.client
    assert isinstance(async_.client, httpx.AsyncClient) and async_.client is async_.client
    assert sync.client.timeout == async_.client.timeout == httpx.Timeout(2.5)
    sync.client.close()


def test_the_middlewares_make_their_clients_with_the_configured_timeout() -> None:
    from logto_middleware import LogtoASGIMiddleware, LogtoConfig, LogtoWSGIMiddleware

    config = LogtoConfig(issuer="https://tenant.logto.app/oidc", client_id="id", client_secret="app-secret",
                         secret="s" * 40, http_timeout=1.5)
    wsgi, asgi = LogtoWSGIMiddleware(lambda environ, start: [], config), LogtoASGIMiddleware(None, config)  # type: ignore[arg-type]
    assert wsgi.driver.client.timeout == asgi.driver.client.timeout == httpx.Timeout(1.5)
    wsgi.driver.client.close()
