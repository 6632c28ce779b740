"""The callback's replay check (`Routes._first_use`): a `state` is refused while it is
remembered (the transaction's lifetime), forgotten after, and concurrent callbacks with one
state let exactly one through."""

from __future__ import annotations

import threading

from conftest import SECRET, Clock

from logto_middleware import LogtoConfig
from logto_middleware._core.handler import LogtoCore
from logto_middleware._core.routes import TRANSACTION_MAX_AGE, Routes


def routes(clock: Clock) -> Routes:
    config = LogtoConfig(issuer="https://tenant.logto.app/oidc", client_id="c", client_secret="s", secret=SECRET)
    return LogtoCore(config, clock=clock).routes


def test_a_state_is_new_once_until_its_transaction_expired() -> None:
    clock = Clock()
    guard = routes(clock)
    assert guard._first_use("a") is True
    assert guard._first_use("a") is False
    clock.advance(TRANSACTION_MAX_AGE - 1)
    assert guard._first_use("a") is False
    clock.advance(1)
    assert guard._first_use("a") is True  # expired exactly at its lifetime, remembered again from now
    assert guard._first_use("a") is False
    assert guard._first_use("b") is True


def test_concurrent_callbacks_with_one_state_let_exactly_one_through() -> None:
    guard = routes(Clock())
    results: list[bool] = []
    barrier = threading.Barrier(16)

    def use() -> None:
        barrier.wait()
        results.append(guard._first_use("state"))

    threads = [threading.Thread(target=use) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
