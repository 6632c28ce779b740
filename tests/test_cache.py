"""`RecentKeys`, the callback's replay check: a key is refused while it is remembered, forgotten
once its time has passed, and the set never holds more than its bound."""

from __future__ import annotations

import threading

from logto_middleware.cache import RecentKeys


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_new_once_until_its_time_has_passed() -> None:
    clock = Clock()
    keys: RecentKeys[str] = RecentKeys(10, ttl=60, clock=clock)
    assert keys.add("a") is True
    assert keys.add("a") is False
    clock.now += 59
    assert keys.add("a") is False
    clock.now += 1
    assert keys.add("a") is True  # expired exactly at ttl, remembered again from now
    assert keys.add("a") is False


def test_expired_keys_are_dropped_as_new_ones_come() -> None:
    clock = Clock()
    keys: RecentKeys[str] = RecentKeys(100, ttl=10, clock=clock)
    for i in range(5):
        keys.add(f"old{i}")
    clock.now += 11
    keys.add("new")
    assert len(keys) == 1
    assert "new" in keys and "old0" not in keys


def test_the_bound_forgets_the_oldest_first() -> None:
    keys: RecentKeys[int] = RecentKeys(3, ttl=60, clock=Clock())
    for i in range(5):
        assert keys.add(i) is True
    assert len(keys) == 3
    assert [i in keys for i in range(5)] == [False, False, True, True, True]


def test_concurrent_adds_of_one_key_let_exactly_one_through() -> None:
    keys: RecentKeys[str] = RecentKeys(1000, ttl=60, clock=Clock())
    results: list[bool] = []
    barrier = threading.Barrier(16)

    def add() -> None:
        barrier.wait()
        results.append(keys.add("state"))

    threads = [threading.Thread(target=add) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
