"""Sections 3 and 4: a refresh storm on one session, and a cold start of concurrent callbacks.

Every provider request goes through `fixtures.ProviderTransport`, which sleeps a fixed
`RTT` (asyncio.sleep for the async client, time.sleep for the sync one) before FakeLogto
answers: one token round-trip is a known figure. ASGI concurrency is N tasks on one event loop
(asyncio.gather); WSGI concurrency is N threads released together by a barrier, with 256 KiB
thread stacks (threading.stack_size) so that 1000 threads fit comfortably.

Latency is measured from the moment the whole storm is released (gather called / barrier
passed) to each request's end, so queueing behind the other requests counts. The same storm is
also run against the bare app (no middleware), the peer session middleware carrying the same
token set, and our middleware on a session that needs nothing: the last is the request time
without the refresh, what the refresh storm is judged against; it is itself judged against the
peer's storm (benchmarks/README.md, section 3, says why).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import fixtures as fx
import httpx
from fixtures import Log
from flask import Flask, request
from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from logto_middleware import LogtoASGIMiddleware, LogtoWSGIMiddleware
from logto_middleware.testing import FakeLogto

RTT = 0.050  # seconds: one simulated provider round-trip
STACK_SIZE = 256 * 1024
# Access tokens live 10 minutes here; the storm runs 5 s after expiry (the session is signed in
# 605 s in the past, see `_refresh_case`).
ACCESS_TOKEN_TTL = 600
_AGE_SESSION = ACCESS_TOKEN_TTL + 5
# The storm without a refresh is judged against the peer's from this N on: below it, one storm is
# a handful of requests on a fresh middleware (its first request decodes the cookie), and
# section 1 times the per-request cost properly.
PEER_JUDGED_FROM_N = 100


def _storm_app() -> Any:
    """Starlette app answering `identity|error`, so a failed refresh or a lost session shows."""

    async def session(req: Request) -> PlainTextResponse:
        user, auth = req.scope.get("user"), req.scope.get("auth")
        identity = user.identity if user is not None and user.is_authenticated else "-"
        return PlainTextResponse(f"{identity}|{getattr(auth, 'error', None) or ''}")

    return Starlette(routes=[Route("/", session)])


def _storm_flask() -> Flask:
    app = Flask("storm")

    @app.get("/")
    def session() -> str:
        user, auth = request.environ.get("logto.user"), request.environ.get("logto.session")
        identity = user.identity if user is not None and user.is_authenticated else "-"
        return f"{identity}|{getattr(auth, 'error', None) or ''}"

    return app


# -- running N concurrent requests ---------------------------------------------------------------


def asgi_storm(app: Any, scope: dict[str, Any], n: int,
               loop: asyncio.AbstractEventLoop) -> list[tuple[float, int, str]]:
    """N concurrent requests as tasks; (latency s, status, body) of each."""
    results: list[tuple[float, int, str]] = []

    async def one(start: float) -> None:
        messages: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        await app(dict(scope), fx.asgi_receive, send)
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        results.append((time.perf_counter() - start, messages[0]["status"], body.decode()))

    async def storm() -> None:
        start = time.perf_counter()
        await asyncio.gather(*(one(start) for _ in range(n)))

    gc.collect()
    loop.run_until_complete(storm())
    return results


def wsgi_storm(app: Any, environ: dict[str, Any], n: int) -> list[tuple[float, int, str]]:
    """N threads released together; (latency s, status, body) of each."""
    results: list[tuple[float, int, str]] = []
    released: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n, action=lambda: released.append(time.perf_counter()))
    gc.collect()

    def one() -> None:
        barrier.wait()
        try:
            status, _, body = fx.call_wsgi(app, environ)
            outcome = (time.perf_counter() - released[0], status, body.decode())
        except Exception as exc:  # a failed request is a result, not a crash of the benchmark
            outcome = (time.perf_counter() - released[0], 599, repr(exc))
        with lock:
            results.append(outcome)

    previous = threading.stack_size(STACK_SIZE)
    try:
        threads = [threading.Thread(target=one) for _ in range(n)]
    finally:
        threading.stack_size(previous)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _summary(results: list[tuple[float, int, str]], expect: str) -> dict[str, Any]:
    latencies = [r[0] * 1000 for r in results]
    failed = [r for r in results if r[1] != 200 or r[2] != expect]
    return {"requests": len(results), "failed": len(failed), "slowest_ms": max(latencies),
            "median_ms": statistics.median(latencies),
            "failures": sorted({f"{r[1]} {r[2][:60]}" for r in failed})[:5]}


# -- section 3 -------------------------------------------------------------------------------------


def _refresh_case(stack: str, n: int, fake: FakeLogto, loop: asyncio.AbstractEventLoop, *,
                  age: int = _AGE_SESSION) -> dict[str, Any]:
    """One fresh middleware, one signed-in session whose access token has expired, N requests
    (with `age=0`, the same storm on a session that needs nothing: what the refresh adds).

    The session is signed in "605 s ago" through a twin middleware whose clock runs behind (same
    secret, so the cookie is valid for both); the measured middleware runs on `time.time`, as in
    production (a benchmark clock object would add its own calls to every request). Its discovery
    document and JWKS are fetched beforehand by a sign-in of another user, as a running app has them.
    """
    transport = fx.ProviderTransport(fake, {"token": RTT})
    past = fx.OffsetClock()
    past.offset = -age
    fake_clock, fake.clock = fake.clock, past  # the provider signs in "605 s ago" too
    if stack == "asgi":
        asgi_mw = LogtoASGIMiddleware(_storm_app(), fx.config(), http_client=httpx.AsyncClient(transport=transport))
        twin = LogtoASGIMiddleware(_storm_app(), fx.config(), clock=past,
                                   http_client=httpx.AsyncClient(transport=fx.ProviderTransport(fake)))
        cookie = fx.sign_in_asgi(twin, fake, loop)
    else:
        wsgi_mw = LogtoWSGIMiddleware(_storm_flask(), fx.config(), http_client=httpx.Client(transport=transport))
        wsgi_twin = LogtoWSGIMiddleware(_storm_flask(), fx.config(), clock=past,
                                        http_client=httpx.Client(transport=fx.ProviderTransport(fake)))
        cookie = fx.sign_in_wsgi(wsgi_twin, fake)
    fake.clock = fake_clock
    if stack == "asgi":
        fx.sign_in_asgi(asgi_mw, fake, loop, login=fx.OTHER_USER)
    else:
        fx.sign_in_wsgi(wsgi_mw, fake, login=fx.OTHER_USER)
    grants_before = fake.counts["token:refresh_token"]
    calls_before, provider_before = transport.endpoint("token")
    if stack == "asgi":
        results = asgi_storm(asgi_mw, fx.asgi_scope("/", cookie), n, loop)
    else:
        results = wsgi_storm(wsgi_mw, fx.wsgi_environ("/", cookie), n)
    calls, provider_ns = transport.endpoint("token")
    summary = _summary(results, f"{fake.make_id_token_claims(fx.USER)['sub']}|")
    summary["refresh_grants"] = fake.counts["token:refresh_token"] - grants_before
    summary["round_trip_ms"] = (provider_ns - provider_before) / 1e6 / max(1, calls - calls_before)
    return summary


def _bare_storm(stack: str, n: int, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    if stack == "asgi":
        results = asgi_storm(_storm_app(), fx.asgi_scope("/"), n, loop)
    else:
        results = wsgi_storm(_storm_flask(), fx.wsgi_environ("/"), n)
    return _summary(results, "-|")


class _Peers:
    """The storm app behind the peer session middleware (Starlette's `SessionMiddleware`,
    Flask's signed-cookie session) with a cookie holding the same realistic Logto token set as
    section 1: what a session costs the same storm without us (and without any refresh)."""

    def __init__(self, fake: FakeLogto) -> None:
        data = fx.token_set(fake).session_dict()
        self.asgi = SessionMiddleware(_storm_app(), secret_key=fx.PEER_SECRET, https_only=True)
        self.asgi_cookie = fx.starlette_peer_cookie(data)
        self.flask = _storm_flask()
        self.flask.secret_key = fx.PEER_SECRET
        self.flask_cookie = fx.flask_peer_cookie(self.flask, data)

    def storm(self, stack: str, n: int, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
        if stack == "asgi":
            results = asgi_storm(self.asgi, fx.asgi_scope("/", self.asgi_cookie), n, loop)
        else:
            results = wsgi_storm(self.flask, fx.wsgi_environ("/", self.flask_cookie), n)
        return _summary(results, "-|")


def refresh_storm(log: Log, *, sizes: tuple[int, ...] = (1, 10, 100, 1000), repeats: int = 3,
                  big_repeats: int | None = None) -> dict[str, Any]:
    """Each case `repeats` times (`big_repeats` for N >= 1000: a thousand threads on two cores
    scatter one storm's time by a few tens of ms), fresh session each time; the bare app, the
    peer session middleware, ours on a session that needs nothing and ours on the expired
    session interleaved. The slowest-request figures are medians over the repeats, counts are
    summed checks."""
    fake = fx.fake_logto(access_token_ttl=ACCESS_TOKEN_TTL)
    peers = _Peers(fake)
    loop = asyncio.new_event_loop()
    big_repeats = big_repeats or repeats
    out: dict[str, Any] = {"rtt_ms": RTT * 1000, "thread_stack_bytes": STACK_SIZE, "repeats": repeats,
                           "big_repeats": big_repeats, "peer_judged_from_n": PEER_JUDGED_FROM_N,
                           "access_token_ttl_s": ACCESS_TOKEN_TTL, "expired_for_s": _AGE_SESSION - ACCESS_TOKEN_TTL}
    for stack in ("asgi", "wsgi"):
        cases: dict[str, Any] = {}
        one_round_trip = 0.0
        for n in sorted(sizes):
            runs, bares, peer_runs, quiets = [], [], [], []
            for _ in range(big_repeats if n >= 1000 else repeats):
                bares.append(_bare_storm(stack, n, loop))
                peer_runs.append(peers.storm(stack, n, loop))
                quiets.append(_refresh_case(stack, n, fake, loop, age=0))
                runs.append(_refresh_case(stack, n, fake, loop))
            if any(q["refresh_grants"] or q["failed"] for q in quiets) or any(p["failed"] for p in peer_runs):
                raise RuntimeError(f"a storm without a refresh refreshed or failed: {quiets} {peer_runs}")
            slowest = statistics.median(r["slowest_ms"] for r in runs)
            bare_slowest = statistics.median(r["slowest_ms"] for r in bares)
            peer_slowest = statistics.median(r["slowest_ms"] for r in peer_runs)
            quiet_slowest = statistics.median(r["slowest_ms"] for r in quiets)
            if not one_round_trip:
                # "One token round-trip": the grant's time inside the transport when it is alone
                # (the fixed delay plus FakeLogto's work). In a storm the same grant also waits for
                # the event loop or the GIL; that is part of the slowest request, not of the yardstick.
                one_round_trip = statistics.median(r["round_trip_ms"] for r in runs)
            cases[str(n)] = {
                "refresh_grants": [r["refresh_grants"] for r in runs],
                "failed": sum(r["failed"] for r in runs), "failures": sorted({f for r in runs for f in r["failures"]}),
                "slowest_ms": slowest, "slowest_runs_ms": [r["slowest_ms"] for r in runs],
                "bare_runs_ms": [b["slowest_ms"] for b in bares], "peer_runs_ms": [p["slowest_ms"] for p in peer_runs],
                "quiet_runs_ms": [q["slowest_ms"] for q in quiets],
                "median_ms": statistics.median(r["median_ms"] for r in runs),
                "bare_slowest_ms": bare_slowest, "peer_slowest_ms": peer_slowest, "round_trip_ms": one_round_trip,
                # The request time without the refresh: the same storm through the middleware on a
                # session that needs nothing. The refresh is judged against it (what the refresh
                # adds); what the middleware adds to every request of the storm is judged against
                # the peer's storm (`peer_slowest_ms`), see benchmarks/README.md, section 3.
                "quiet_slowest_ms": quiet_slowest, "refresh_added_ms": slowest - quiet_slowest,
                "limit_ms": 1.5 * one_round_trip + quiet_slowest,
                "grant_in_storm_ms": statistics.median(r["round_trip_ms"] for r in runs),
                # Informational: against the bare storm, as if our per-request cost in the storm were
                # part of the refresh (the peer's storm, with no refresh at all, would not fit either).
                "added_ms": slowest - bare_slowest, "bare_limit_ms": 1.5 * one_round_trip + bare_slowest,
                "peer_added_ms": peer_slowest - bare_slowest,
            }
            log(f"3. refresh storm {stack.upper()} N={n}: grants {cases[str(n)]['refresh_grants']}, "
                f"slowest {slowest:.1f} ms (bare {bare_slowest:.1f} ms, peer {peer_slowest:.1f} ms, "
                f"no refresh {quiet_slowest:.1f} ms, limit {cases[str(n)]['limit_ms']:.1f} ms)")
        out[stack] = cases
    loop.close()
    return out


# -- section 4 -------------------------------------------------------------------------------------


def cold_start(log: Log, *, concurrency: int = 100) -> dict[str, Any]:
    """N concurrent first callbacks on a fresh middleware: they all need the discovery document
    (token endpoint) and the JWKS (ID token check); each may be fetched once."""
    fake = fx.fake_logto()
    preparer = LogtoWSGIMiddleware(fx.flask_app(), fx.config(),
                                   http_client=httpx.Client(transport=fx.ProviderTransport(fake)))
    out: dict[str, Any] = {"concurrency": concurrency, "rtt_ms": RTT * 1000}
    loop = asyncio.new_event_loop()
    delays = {"discovery": RTT, "jwks": RTT, "token": RTT}
    for stack in ("asgi", "wsgi"):
        transactions = fx.start_sign_ins_wsgi(preparer, fake, concurrency)
        before = {k: fake.counts[k] for k in ("discovery", "jwks", "token:authorization_code")}
        transport = fx.ProviderTransport(fake, delays)
        results: list[tuple[float, int, str]]
        if stack == "asgi":
            app: Any = LogtoASGIMiddleware(fx.starlette_app(), fx.config(), http_client=httpx.AsyncClient(
                transport=transport))
            results = _asgi_callbacks(app, transactions, loop)
        else:
            app = LogtoWSGIMiddleware(fx.flask_app(), fx.config(), http_client=httpx.Client(transport=transport))
            results = _wsgi_callbacks(app, transactions)
        counts = {k: fake.counts[k] - v for k, v in before.items()}
        failed = [r for r in results if r[1] != 302 or "session-token=" not in r[2]]
        out[stack] = {"discovery": counts["discovery"], "jwks": counts["jwks"],
                      "code_grants": counts["token:authorization_code"], "failed": len(failed),
                      "slowest_ms": max(r[0] for r in results) * 1000}
        log(f"4. cold start {stack.upper()}: {concurrency} concurrent callbacks -> discovery {counts['discovery']}, "
            f"jwks {counts['jwks']}, failed {len(failed)}")
    loop.close()
    return out


def _asgi_callbacks(app: Any, transactions: list[fx.Transaction], loop: asyncio.AbstractEventLoop) -> list[
        tuple[float, int, str]]:
    results: list[tuple[float, int, str]] = []

    async def one(t: fx.Transaction, start: float) -> None:
        messages: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        await app(fx.asgi_scope(t.path, t.cookie, t.query), fx.asgi_receive, send)
        status, headers = fx.asgi_status_headers(messages)
        cookies = " ".join(v for k, v in headers if k == "set-cookie")
        results.append((time.perf_counter() - start, status, cookies))

    async def storm() -> None:
        start = time.perf_counter()
        await asyncio.gather(*(one(t, start) for t in transactions))

    loop.run_until_complete(storm())
    return results


def _wsgi_callbacks(app: Any, transactions: list[fx.Transaction]) -> list[tuple[float, int, str]]:
    results: list[tuple[float, int, str]] = []
    lock = threading.Lock()
    released: list[float] = []
    barrier = threading.Barrier(len(transactions), action=lambda: released.append(time.perf_counter()))

    def one(t: fx.Transaction) -> Callable[[], None]:
        def run() -> None:
            barrier.wait()
            status, headers, _ = fx.call_wsgi(app, fx.wsgi_environ(t.path, t.cookie, t.query))
            cookies = " ".join(v for k, v in headers if k.lower() == "set-cookie")
            with lock:
                results.append((time.perf_counter() - released[0], status, cookies))

        return run

    previous = threading.stack_size(STACK_SIZE)
    try:
        threads = [threading.Thread(target=one(t)) for t in transactions]
    finally:
        threading.stack_size(previous)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
