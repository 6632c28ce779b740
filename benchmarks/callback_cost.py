"""Section 5: the middleware's own time for a callback, against one ES384 verification.

Sign-ins are started through a separate middleware and authorized at FakeLogto beforehand, so
each measured callback is a genuine one (fresh state, fresh code). The measured middleware is
warm (discovery and JWKS cached by a first callback). A callback's time minus its round-trip
(the app's httpx client sending the token request and reading the answer: `Client.send`, with
FakeLogto behind httpx's MockTransport, which includes *signing* the ID token) is the
middleware's own time: parsing and decrypting the transaction cookie, building the token
request and reading its answer, verifying the ID token, creating and sealing the session
cookie, the response. Both clocks are kept; the figure is thread CPU time (the provider runs in
the same thread, and its CPU time is subtracted the same way). httpx's share of the round-trip
(`Client.send` around the transport: auth and redirect handling, cookie extraction, reading
the body) is reported too, with the ratio it would give if it were counted as the middleware's.

The floor is the bare ES384 verification of the same kind of ID token with `cryptography`
(raw r||s to DER, ECDSA P-384 / SHA-384 verify). Each callback is timed right after one floor
verification, so that both sides of the ratio run in the same moment of the machine (its speed
drifts by a factor of two within seconds on a shared VM). A round is K such pairs per stack; its
ratio is the callbacks' own time over the verifications' time; the target takes the median
round.
"""

from __future__ import annotations

import asyncio
import base64
import statistics
import time
from collections.abc import Callable
from typing import Any

import fixtures as fx
import httpx
import timing
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from fixtures import Log

from logto_middleware import LogtoASGIMiddleware, LogtoWSGIMiddleware
from logto_middleware.testing import FakeLogto


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def es384_verifier(fake: FakeLogto, id_token: str) -> Callable[[], None]:
    """One bare ES384 verification of `id_token` with `cryptography`."""
    jwk = next(k for k in fake.jwks()["keys"] if k.get("kid") == fake.current_kid)
    x, y = (int.from_bytes(_b64(jwk[c]), "big") for c in ("x", "y"))
    public_key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP384R1()).public_key()
    signing_input, _, signature = id_token.rpartition(".")
    message = signing_input.encode()
    algorithm = ec.ECDSA(hashes.SHA384())

    def verify() -> None:
        raw = _b64(signature)
        der = encode_dss_signature(int.from_bytes(raw[:48], "big"), int.from_bytes(raw[48:], "big"))
        public_key.verify(der, message, algorithm)

    verify()  # raises if the floor would time a failure
    return verify


def _one_wsgi(app: Any, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]]]:
    status, headers, _ = fx.call_wsgi(app, environ)
    return status, headers


async def _one_asgi(app: Any, scope: dict[str, Any]) -> tuple[int, list[tuple[str, str]]]:
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, fx.asgi_receive, send)
    return fx.asgi_status_headers(messages)


def _check(outcome: tuple[int, list[tuple[str, str]]]) -> None:
    """A callback must have signed in: a redirect that sets the session cookie."""
    status, headers = outcome
    if status != 302 or not any("session-token=" in v for k, v in headers if k.lower() == "set-cookie"):
        raise RuntimeError(f"callback failed: {status} {fx.header(headers, 'location')}")


class _TimedClient(httpx.Client):
    """An httpx client that sums the CPU and wall time spent in `send` (transport included)."""

    send_cpu_ns = send_wall_ns = 0

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        try:
            return super().send(request, **kwargs)
        finally:
            self.send_cpu_ns += time.thread_time_ns() - cpu
            self.send_wall_ns += time.perf_counter_ns() - wall


class _TimedAsyncClient(httpx.AsyncClient):
    """`_TimedClient` for the ASGI stack (callbacks run one at a time: the thread's CPU time is
    the callback's)."""

    send_cpu_ns = send_wall_ns = 0

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        try:
            return await super().send(request, **kwargs)
        finally:
            self.send_cpu_ns += time.thread_time_ns() - cpu
            self.send_wall_ns += time.perf_counter_ns() - wall


class _Stack:
    """One warm middleware and a way to run a list of callbacks through it."""

    def __init__(self, stack: str, fake: FakeLogto, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = fx.ProviderTransport(fake)
        self.stack, self.loop = stack, loop
        self.app: Any
        self.client: _TimedClient | _TimedAsyncClient
        if stack == "asgi":
            self.client = _TimedAsyncClient(transport=self.transport)
            self.app = LogtoASGIMiddleware(fx.starlette_app(), fx.config(), http_client=self.client)
        else:
            self.client = _TimedClient(transport=self.transport)
            self.app = LogtoWSGIMiddleware(fx.flask_app(), fx.config(), http_client=self.client)

    def requests(self, transactions: list[fx.Transaction]) -> list[dict[str, Any]]:
        """The callbacks' ASGI scopes or WSGI environs, built before any clock starts (the
        server's work, not the middleware's)."""
        build = fx.asgi_scope if self.stack == "asgi" else fx.wsgi_environ
        return [build(t.path, t.cookie, t.query) for t in transactions]

    def run(self, transactions: list[fx.Transaction]) -> None:
        requests = self.requests(transactions)
        if self.stack == "asgi":
            async def all_() -> None:
                for r in requests:
                    _check(await _one_asgi(self.app, r))

            self.loop.run_until_complete(all_())
        else:
            for r in requests:
                _check(_one_wsgi(self.app, r))

    def _pairs(self, transactions: list[fx.Transaction], verify: Callable[[], None]) -> tuple[int, int, int]:
        """One verification, then one callback, for each transaction: (floor CPU, callback CPU,
        callback wall), ns. One loop for both stacks: a WSGI callback runs inside it synchronously."""
        cpu_clock, wall_clock = time.thread_time_ns, time.perf_counter_ns
        asgi = self.stack == "asgi"
        requests = self.requests(transactions)

        async def all_() -> tuple[int, int, int]:
            floor = cpu = wall = 0
            for r in requests:
                start = cpu_clock()
                verify()
                floor += cpu_clock() - start
                wall_start, start = wall_clock(), cpu_clock()
                outcome = (await _one_asgi(self.app, r)) if asgi else _one_wsgi(self.app, r)
                cpu, wall = cpu + cpu_clock() - start, wall + wall_clock() - wall_start
                _check(outcome)
            return floor, cpu, wall

        return self.loop.run_until_complete(all_())

    def round(self, transactions: list[fx.Transaction], verify: Callable[[], None]) -> dict[str, float]:
        """Per callback (µs): own CPU and wall time (the round-trips taken out), provider CPU time,
        httpx's CPU time around the transport, provider requests, and the floor verification
        timed next to it."""
        t, client = self.transport, self.client
        calls, p_cpu, send_cpu, send_wall = t.calls, t.provider_cpu_ns, client.send_cpu_ns, client.send_wall_ns
        floor, cpu, wall = self._pairs(transactions, verify)
        p_cpu, send_cpu = t.provider_cpu_ns - p_cpu, client.send_cpu_ns - send_cpu
        send_wall = client.send_wall_ns - send_wall
        n = len(transactions)
        return {"own": (cpu - send_cpu) / n / 1000, "own_wall": (wall - send_wall) / n / 1000,
                "provider": p_cpu / n / 1000, "requests": (t.calls - calls) / n, "floor": floor / n / 1000,
                "client": (send_cpu - p_cpu) / n / 1000}


def run(log: Log, *, rounds: int, per_round: int) -> dict[str, Any]:
    """Rounds of `per_round` (verification, callback) pairs per stack, stacks interleaved."""
    fake = fx.fake_logto()
    preparer = LogtoWSGIMiddleware(fx.flask_app(), fx.config(),
                                   http_client=httpx.Client(transport=fx.ProviderTransport(fake)))
    verify = es384_verifier(fake, fx.token_set(fake).id_token)
    loop = asyncio.new_event_loop()
    stacks = {name: _Stack(name, fake, loop) for name in ("asgi", "wsgi")}
    for stack in stacks.values():
        stack.run(fx.start_sign_ins_wsgi(preparer, fake, 5))  # warm-up: discovery, JWKS, code paths
    timing.calls(verify)(per_round)
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in stacks}
    for _ in range(rounds):
        for name, stack in stacks.items():
            samples[name].append(stack.round(fx.start_sign_ins_wsgi(preparer, fake, per_round), verify))
    loop.close()
    floors = [r["floor"] for rows in samples.values() for r in rows]
    out: dict[str, Any] = {"floor": {"median_us": statistics.median(floors), "mad_us": timing.mad(floors),
                                     "rounds_us": floors, "clock": timing.CPU}}
    for name, rows in samples.items():
        own = [r["own"] for r in rows]
        ratios = [r["own"] / r["floor"] for r in rows]
        out[name] = {"own_us": statistics.median(own), "own_mad_us": timing.mad(own),
                     "own_wall_us": statistics.median(r["own_wall"] for r in rows),
                     "provider_us": statistics.median(r["provider"] for r in rows),
                     # Informational: httpx's `Client.send` around the transport (part of the
                     # round-trip), and the ratio if it were counted as the middleware's own time.
                     "client_us": statistics.median(r["client"] for r in rows),
                     "with_client_ratio": statistics.median((r["own"] + r["client"]) / r["floor"]
                                                            for r in rows),
                     "floor_us": statistics.median(r["floor"] for r in rows),
                     "provider_requests_per_callback": statistics.median(r["requests"] for r in rows),
                     "ratio": statistics.median(ratios), "ratio_mad": timing.mad(ratios), "ratios": ratios,
                     "rounds": rounds, "callbacks_per_round": per_round, "own_rounds_us": own}
        log(f"5. callback cost {name.upper()}: own {out[name]['own_us']:.0f} µs = {out[name]['ratio']:.2f}x "
            f"the ES384 floor next to it ({out[name]['floor_us']:.0f} µs), provider {out[name]['provider_us']:.0f} µs, "
            f"httpx around the transport {out[name]['client_us']:.0f} µs "
            f"(counted as own: {out[name]['with_client_ratio']:.2f}x)")
    return out
