"""`run.py --profile`: where the middleware spends a request, per function (cProfile).

Runs one in-process request shape many times under cProfile and prints the functions by own
time, in µs per request (cProfile's own overhead inflates every figure about alike, so read
them as shares, and read the absolute cost from the timed sections).
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
from typing import Any

import fixtures as fx
import httpx
import overhead
from fixtures import Log

from logto_middleware import LogtoASGIMiddleware, LogtoWSGIMiddleware, MemoryStore

REQUESTS = 20_000


def _table(profile: cProfile.Profile, requests: int, top: int, log: Log) -> None:
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = filename.split("site-packages/")[-1].split("/work/main/")[-1]
        rows.append((tottime, cumtime, calls, f"{where}:{line}({name})"))
    rows.sort(reverse=True)
    log(f"{'own µs/req':>10} {'cum µs/req':>10} {'calls/req':>9}  function")
    for tottime, cumtime, calls, label in rows[:top]:
        log(f"{tottime * 1e6 / requests:10.2f} {cumtime * 1e6 / requests:10.2f} {calls / requests:9.2f}  {label}")


def _profile(batch: overhead.timing.Batch, requests: int, top: int, log: Log) -> None:
    batch(2000)  # warm-up
    profile = cProfile.Profile()
    profile.enable()
    batch(requests)
    profile.disable()
    _table(profile, requests, top, log)


def run(log: Log, *, requests: int = REQUESTS, top: int = 25) -> None:
    fake = fx.fake_logto()
    tokens = fx.token_set(fake)
    cfg = fx.config()
    cookie = fx.cookie_store_cookie(cfg, tokens)
    loop = asyncio.new_event_loop()

    def asgi(store: Any = None) -> LogtoASGIMiddleware:
        return LogtoASGIMiddleware(fx.starlette_app(), cfg, store=store,
                                   http_client=httpx.AsyncClient(transport=fx.ProviderTransport(fake)))

    mw = asgi()
    memory_mw = asgi(MemoryStore())
    memory_cookie = fx.sign_in_asgi(memory_mw, fake, loop)
    wsgi_mw = LogtoWSGIMiddleware(fx.flask_app(), cfg, http_client=httpx.Client(transport=fx.ProviderTransport(fake)))
    cases = [
        ("ASGI, anonymous", overhead.asgi_batch(mw, fx.asgi_scope("/"), loop)),
        ("ASGI, signed in, cookie store", overhead.asgi_batch(mw, fx.asgi_scope("/", cookie), loop)),
        ("ASGI, signed in, MemoryStore", overhead.asgi_batch(memory_mw, fx.asgi_scope("/", memory_cookie), loop)),
        ("WSGI, anonymous", overhead.wsgi_batch(wsgi_mw, fx.wsgi_environ("/"))),
        ("WSGI, signed in, cookie store", overhead.wsgi_batch(wsgi_mw, fx.wsgi_environ("/", cookie))),
    ]
    for title, batch in cases:
        log(f"\n== {title}: cProfile over {requests} requests (app included) ==")
        _profile(batch, requests, top, log)
    loop.close()
