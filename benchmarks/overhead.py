"""Section 1: per-request overhead in process, and the floor (one decrypt + parse)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
from collections.abc import Callable
from typing import Any

import fixtures as fx
import httpx
import timing
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fixtures import Log

from logto_middleware import LogtoASGIMiddleware, LogtoWSGIMiddleware, MemoryStore, RedisStore


def asgi_batch(app: Any, scope: dict[str, Any], loop: asyncio.AbstractEventLoop) -> timing.Batch:
    """n requests awaited back to back in one coroutine, a fresh copy of the scope each."""
    receive, send = fx.asgi_receive, fx.asgi_discard

    async def run(n: int) -> None:
        for _ in range(n):
            await app(dict(scope), receive, send)

    return lambda n: loop.run_until_complete(run(n))


def wsgi_batch(app: Any, environ: dict[str, Any]) -> timing.Batch:
    """n requests, each with a fresh copy of the environ, body iterated and closed."""
    start_response = fx.wsgi_start_response

    def run(n: int) -> None:
        for _ in range(n):
            body = app(dict(environ), start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()

    return run


def redis_get_batch(client: Any, loop: asyncio.AbstractEventLoop | None) -> timing.Batch:
    """n `GET`s of `bench:value` (as large as a stored session), back to back: one local round
    trip each (asyncio client on the loop, or the sync client)."""
    if loop is None:
        def run_sync(n: int) -> None:
            for _ in range(n):
                client.get("bench:value")

        return run_sync

    async def run(n: int) -> None:
        for _ in range(n):
            await client.get("bench:value")

    return lambda n: loop.run_until_complete(run(n))


def round_trips(store: RedisStore, requests: Callable[[int], None], n: int = 200) -> float:
    """Redis commands per request: `requests(n)` with the store's calls counted."""
    sent = [0]
    execute, execute_async = store._execute, store._execute_async

    def counted(*args: Any) -> Any:
        sent[0] += 1
        return execute(*args)

    async def counted_async(*args: Any) -> Any:
        sent[0] += 1
        return await execute_async(*args)

    store._execute, store._execute_async = counted, counted_async  # type: ignore[method-assign]
    try:
        requests(n)
    finally:
        del store._execute, store._execute_async
    return sent[0] / n


def floor_batch(plaintext: bytes) -> timing.Batch:
    """The bare cryptographic work of one cookie: base64url-decode, AES-256-GCM open, json.loads."""
    key = AESGCM.generate_key(bit_length=256)
    aead = AESGCM(key)
    nonce = os.urandom(12)
    aad = b"logto.session-token/2"  # as the cookie store seals
    token = base64.urlsafe_b64encode(nonce + aead.encrypt(nonce, plaintext, aad)).rstrip(b"=").decode()
    decode, loads = base64.urlsafe_b64decode, json.loads

    def run(n: int) -> None:
        for _ in range(n):
            raw = decode(token + "=" * (-len(token) % 4))
            loads(aead.decrypt(raw[:12], raw[12:], aad))

    return run


def _check_asgi(app: Any, cookie: str | None, loop: asyncio.AbstractEventLoop, expect: str) -> None:
    messages = fx.call_asgi(app, fx.asgi_scope("/whoami", cookie), loop)
    status, headers = fx.asgi_status_headers(messages)
    body = messages[1]["body"].decode()
    if status != 200 or body != expect:
        raise RuntimeError(f"setup check failed: {status} {body!r}, wanted {expect!r}")
    if any(k == "set-cookie" for k, _ in headers):
        raise RuntimeError("an unchanged session was answered with Set-Cookie")


def run(log: Log, *, repeats: int, batch_seconds: float) -> dict[str, Any]:
    fake = fx.fake_logto()
    tokens = fx.token_set(fake)
    cfg = fx.config()
    data = tokens.session_dict()
    plaintext = json.dumps(data, separators=(",", ":")).encode()
    ours_cookie = fx.cookie_store_cookie(cfg, tokens)
    sub = tokens.claims["sub"]
    loop = asyncio.new_event_loop()
    results: dict[str, Any] = {"payload_bytes": len(plaintext), "id_token_bytes": len(tokens.id_token)}

    with fx.RedisServer() as redis_server:
        bare = fx.starlette_app()
        peer = fx.starlette_peer_app()
        peer_cookie = fx.starlette_peer_cookie(data)

        def ours(store: Any = None) -> LogtoASGIMiddleware:
            client = httpx.AsyncClient(transport=fx.ProviderTransport(fake))
            return LogtoASGIMiddleware(fx.starlette_app(), cfg, http_client=client, store=store)

        memory_mw_store = MemoryStore(max_sessions=100_000)
        cookie_mw, memory_mw = ours(), ours(memory_mw_store)
        redis_store = RedisStore.from_url(redis_server.url)
        redis_mw = ours(redis_store)
        memory_cookie = fx.sign_in_asgi(memory_mw, fake, loop)
        redis_cookie = fx.sign_in_asgi(redis_mw, fake, loop)
        fake_sub = fake.make_id_token_claims(fx.USER)["sub"]
        _check_asgi(cookie_mw, ours_cookie, loop, sub)
        _check_asgi(memory_mw, memory_cookie, loop, fake_sub)
        _check_asgi(redis_mw, redis_cookie, loop, fake_sub)
        _check_asgi(cookie_mw, None, loop, "-")
        results["cookie_header_bytes"] = {"starlette_peer": len(peer_cookie), "cookie_store": len(ours_cookie),
                                          "memory_store": len(memory_cookie), "redis_store": len(redis_cookie)}

        import redis
        import redis.asyncio

        get_async = redis.asyncio.Redis.from_url(redis_server.url)
        setup = redis.Redis.from_url(redis_server.url)
        session_bytes = max(len(setup.get(k) or b"") for k in setup.keys("logto:session:*"))
        setup.set("bench:value", b"x" * session_bytes)
        setup.close()
        results["stored_session_bytes"] = session_bytes
        asgi_redis = asgi_batch(redis_mw, fx.asgi_scope("/", redis_cookie), loop)
        results["redis_commands_per_request"] = {"asgi": round_trips(redis_store, asgi_redis)}
        asgi = {
            "bare": asgi_batch(bare, fx.asgi_scope("/"), loop),
            "peer": asgi_batch(peer, fx.asgi_scope("/", peer_cookie), loop),
            "anonymous": asgi_batch(cookie_mw, fx.asgi_scope("/"), loop),
            "cookie": asgi_batch(cookie_mw, fx.asgi_scope("/", ours_cookie), loop),
            "memory": asgi_batch(memory_mw, fx.asgi_scope("/", memory_cookie), loop),
            "redis": asgi_redis,
            "redis_get": redis_get_batch(get_async, loop),
            "floor": floor_batch(plaintext),
        }
        log("1. per-request overhead, ASGI (Starlette) + floor")
        asgi_samples = timing.compare(asgi, repeats=repeats, batch_seconds=batch_seconds,
                                      clocks={"redis": timing.WALL, "redis_get": timing.WALL})
        loop.run_until_complete(get_async.aclose())

        flask_bare = fx.flask_app()
        flask_peer = fx.flask_app(secret_key=fx.PEER_SECRET)
        flask_cookie = fx.flask_peer_cookie(flask_peer, data)

        def wsgi_ours(store: Any = None) -> LogtoWSGIMiddleware:
            return LogtoWSGIMiddleware(fx.flask_app(), cfg, store=store,
                                       http_client=httpx.Client(transport=fx.ProviderTransport(fake)))

        wsgi_mw = wsgi_ours()
        # The same stores, so the sessions signed in above serve the WSGI rounds too.
        wsgi_memory, wsgi_redis_mw = wsgi_ours(memory_mw_store), wsgi_ours(redis_store)
        status, _, body = fx.call_wsgi(flask_peer, fx.wsgi_environ("/", flask_cookie))
        assert status == 200 and body == b"ok", (status, body)
        for app, cookie in ((wsgi_memory, memory_cookie), (wsgi_redis_mw, redis_cookie)):
            status, _, body = fx.call_wsgi(app, fx.wsgi_environ("/whoami", cookie))
            if status != 200 or body.decode() != fake_sub:
                raise RuntimeError(f"setup check failed (WSGI): {status} {body!r}")
        wsgi_redis = wsgi_batch(wsgi_redis_mw, fx.wsgi_environ("/", redis_cookie))
        results["redis_commands_per_request"]["wsgi"] = round_trips(redis_store, wsgi_redis)
        get_sync = redis.Redis.from_url(redis_server.url)
        wsgi = {
            "bare": wsgi_batch(flask_bare, fx.wsgi_environ("/")),
            "peer": wsgi_batch(flask_peer, fx.wsgi_environ("/", flask_cookie)),
            "anonymous": wsgi_batch(wsgi_mw, fx.wsgi_environ("/")),
            "cookie": wsgi_batch(wsgi_mw, fx.wsgi_environ("/", ours_cookie)),
            "memory": wsgi_batch(wsgi_memory, fx.wsgi_environ("/", memory_cookie)),
            "redis": wsgi_redis,
            "redis_get": redis_get_batch(get_sync, None),
            "floor": floor_batch(plaintext),
        }
        log("1. per-request overhead, WSGI (Flask)")
        wsgi_samples = timing.compare(wsgi, repeats=repeats, batch_seconds=batch_seconds,
                                      clocks={"redis": timing.WALL, "redis_get": timing.WALL})
        get_sync.close()
        redis_store.close()

    results["cookie_header_bytes"]["flask_peer"] = len(flask_cookie)
    loop.close()

    floors = {"asgi": asgi_samples.pop("floor"), "wsgi": wsgi_samples.pop("floor")}
    results["floor"] = timing.Samples("floor", floors["asgi"].iterations, timing.CPU,
                                      floors["asgi"].wall_ns + floors["wsgi"].wall_ns,
                                      floors["asgi"].cpu_ns + floors["wsgi"].cpu_ns).to_dict()
    for stack, samples in (("asgi", asgi_samples), ("wsgi", wsgi_samples)):
        base = samples["bare"]
        entry: dict[str, Any] = {"bare": base.to_dict(), "floor": floors[stack].to_dict()}
        for name, variant in samples.items():
            if name == "bare":
                continue
            if name == "redis_get":  # not a request: its own time is the figure
                entry[name] = variant.to_dict()
                continue
            median, spread, diffs = timing.overhead(variant, base)
            floor_ratios = [d * 1000 / f for d, f in zip(diffs, floors[stack].values(), strict=True)]
            entry[name] = {**variant.to_dict(), "overhead_us": median, "overhead_mad_us": spread,
                           "overhead_rounds_us": diffs, "floor_ratio": statistics.median(floor_ratios)}
        results[stack] = entry
    return results
