"""Section 6: memory. A MemoryStore holding 100 000 sessions, and requests without growth.

MemoryStore: one real sign-in through the middleware, with a recording MemoryStore, shows
exactly what the middleware stores for a session (key, value size, tags). A store bounded at
100 000 sessions is then filled with 100 000 such records through its public `set` (each with
its own key, value bytes and `sub:`/`sid:` tags, as 100 000 different users would leave them),
and the memory it retains is measured with tracemalloc; 50 % more sessions are then added in two
steps to show the bound holds: the length stays at the bound and the memory within 10 % (dict
tables may be re-sized by the churn; anything that accumulated would grow past that).

Requests: each middleware (ASGI, WSGI; cookie store) wraps a minimal app (a raw ASGI callable /
WSGI function, so that the loop is as fast as possible and the figure is about the middleware).
After a warm-up, tracemalloc is started, a snapshot taken, the requests run (one prepared scope
or environ, copied per request), garbage collected, and a second snapshot compared with the
first: the difference is memory the requests left behind.
"""

from __future__ import annotations

import asyncio
import gc
import secrets
import time
import tracemalloc
from collections.abc import Sequence
from typing import Any

import fixtures as fx
import httpx
from fixtures import Log

from logto_middleware import LogtoASGIMiddleware, LogtoWSGIMiddleware, MemoryStore
from logto_middleware.flow import Flow, run_without_io

GROWTH_LIMIT = 64 * 1024  # bytes left behind by a whole run that still count as flat
EXTRA_FRACTION, EXTRA_STEPS = 0.5, 2  # insert 50 % more sessions than the bound, in two steps
MEMORY_SLACK = 0.10  # dict tables re-size under churn; anything that accumulates grows past this


class RecordingStore(MemoryStore):
    """A MemoryStore that remembers what the middleware asked it to store."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.records: list[tuple[str, int, int, tuple[str, ...]]] = []

    def set(self, key: str, value: bytes, ttl: int, tags: Sequence[str] = ()) -> Flow[None]:
        self.records.append((key, len(value), ttl, tuple(tags)))
        return super().set(key, value, ttl, tags)


def _value(size: int) -> bytes:
    # Stored values are base64url text of ciphertext: random characters of the same alphabet.
    return secrets.token_urlsafe(size)[:size].encode("ascii")


def memory_store(log: Log, *, sessions: int = 100_000) -> dict[str, Any]:
    fake = fx.fake_logto()
    recorder = RecordingStore()
    app = LogtoASGIMiddleware(fx.starlette_app(), fx.config(), store=recorder,
                              http_client=httpx.AsyncClient(transport=fx.ProviderTransport(fake)))
    fx.sign_in_asgi(app, fake)
    key, size, ttl, tags = next(r for r in recorder.records if r[0].startswith("session:"))
    key_prefix = key.split(":", 1)[0] + ":"
    tag_kinds = [tag.split(":", 1)[0] + ":" for tag in tags]

    def fill(store: MemoryStore, count: int) -> None:
        for _ in range(count):
            user = secrets.token_hex(6)
            tags_ = [kind + (user if kind == "sub:" else secrets.token_urlsafe(16)) for kind in tag_kinds]
            run_without_io(store.set(key_prefix + secrets.token_urlsafe(32), _value(size), ttl, tags_))

    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    store = MemoryStore(max_sessions=sessions)
    fill(store, sessions)
    gc.collect()
    full = tracemalloc.get_traced_memory()[0] - start
    lengths, memory = [], []
    for _ in range(EXTRA_STEPS):
        fill(store, int(sessions * EXTRA_FRACTION / EXTRA_STEPS))
        gc.collect()
        lengths.append(len(store))
        memory.append(tracemalloc.get_traced_memory()[0] - start)
    tracemalloc.stop()
    extra = int(sessions * EXTRA_FRACTION / EXTRA_STEPS) * EXTRA_STEPS
    result = {"sessions": sessions, "value_bytes": size, "tags": list(tag_kinds), "bytes_total": full,
              "bytes_per_session": full / sessions, "extra_inserted": extra, "lengths_after_steps": lengths,
              "length_after_extra": max(lengths), "bytes_after_steps": memory,
              "max_growth_fraction": max(memory) / full - 1,
              "bound_holds": max(lengths) <= sessions and max(memory) <= full * (1 + MEMORY_SLACK)}
    log(f"6. MemoryStore: {full / sessions:.0f} bytes/session ({size} bytes of it the sealed session), "
        f"{max(lengths)} sessions at most after {sessions + extra} inserts, memory {max(memory) / full - 1:+.1%}")
    return result


async def _asgi_inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _wsgi_inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _growth(run: Any, count: int, warmup: int) -> dict[str, Any]:
    run(warmup)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    started = time.perf_counter()
    run(count)
    elapsed = time.perf_counter() - started
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    own = [tracemalloc.Filter(False, tracemalloc.__file__)]  # the snapshots' own bookkeeping
    stats = after.filter_traces(own).compare_to(before.filter_traces(own), "lineno")
    growth = sum(s.size_diff for s in stats)
    top = [f"{s.traceback[0].filename.split('/')[-1]}:{s.traceback[0].lineno} {s.size_diff:+d} B"
           for s in sorted(stats, key=lambda s: -s.size_diff)[:3] if s.size_diff > 0]
    return {"requests": count, "growth_bytes": growth, "bytes_per_1000_requests": growth * 1000 / count,
            "seconds": elapsed, "top_growth": top, "flat": growth <= GROWTH_LIMIT}


def requests(log: Log, *, anonymous: int, signed_in: int, warmup: int = 20_000) -> dict[str, Any]:
    fake = fx.fake_logto()
    cfg = fx.config()
    cookie = fx.cookie_store_cookie(cfg, fx.token_set(fake))
    loop = asyncio.new_event_loop()
    asgi = LogtoASGIMiddleware(_asgi_inner, cfg, http_client=httpx.AsyncClient(transport=fx.ProviderTransport(fake)))
    wsgi = LogtoWSGIMiddleware(_wsgi_inner, cfg, http_client=httpx.Client(transport=fx.ProviderTransport(fake)))

    def asgi_run(scope: dict[str, Any]) -> Any:
        async def many(n: int) -> None:
            for _ in range(n):
                await asgi(dict(scope), fx.asgi_receive, fx.asgi_discard)

        return lambda n: loop.run_until_complete(many(n))

    def wsgi_run(environ: dict[str, Any]) -> Any:
        def many(n: int) -> None:
            for _ in range(n):
                for _chunk in wsgi(dict(environ), fx.wsgi_start_response):
                    pass

        return many

    out: dict[str, Any] = {"growth_limit_bytes": GROWTH_LIMIT, "warmup_requests": warmup}
    cases = [("asgi_anonymous", asgi_run(fx.asgi_scope("/")), anonymous),
             ("asgi_signed_in", asgi_run(fx.asgi_scope("/", cookie)), signed_in),
             ("wsgi_anonymous", wsgi_run(fx.wsgi_environ("/")), anonymous),
             ("wsgi_signed_in", wsgi_run(fx.wsgi_environ("/", cookie)), signed_in)]
    for name, run, count in cases:
        out[name] = _growth(run, count, warmup)
        log(f"6. memory {name}: {count} requests, {out[name]['growth_bytes']:+d} bytes after warm-up "
            f"({out[name]['seconds']:.1f} s)")
    loop.close()
    return out
