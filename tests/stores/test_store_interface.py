"""One suite for every store, through both drivers: the interface's contract."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from logto_middleware.flow import AsyncDriver, Flow, SyncDriver
from logto_middleware.stores import MemoryStore, RedisStore, SessionStore


class Runner:
    """Runs a store flow through the sync or the async driver."""

    def __init__(self, flavour: str) -> None:
        self.flavour = flavour
        self._sync = SyncDriver(httpx.Client())
        self._async = AsyncDriver(httpx.AsyncClient())
        self._loop = asyncio.new_event_loop()

    def __call__(self, flow: Flow[Any]) -> Any:
        if self.flavour == "sync":
            return self._sync.run(flow)
        return self._loop.run_until_complete(self._async.run(flow))

    def close(self) -> None:
        self._loop.close()


@pytest.fixture(params=["sync", "async"])
def run(request: pytest.FixtureRequest) -> Any:
    runner = Runner(request.param)
    yield runner
    runner.close()


class MovableClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def store_factory(request: pytest.FixtureRequest) -> Callable[[], SessionStore]:
    if request.param == "memory":
        return MemoryStore
    url = request.getfixturevalue("redis_url")
    return lambda: RedisStore.from_url(url, prefix="test:")


def test_set_get_delete(store_factory: Callable[[], SessionStore], run: Runner) -> None:
    store = store_factory()
    assert run(store.get("a")) is None
    run(store.set("a", b"value-a", 60, ["sub:u1"]))
    assert run(store.get("a")) == b"value-a"
    run(store.set("a", b"value-b", 60, ["sub:u1"]))
    assert run(store.get("a")) == b"value-b"
    run(store.delete("a"))
    assert run(store.get("a")) is None


def test_delete_tagged_removes_every_session_of_a_user(store_factory: Callable[[], SessionStore], run: Runner) -> None:
    store = store_factory()
    run(store.set("s1", b"1", 60, ["sub:u1", "sid:x"]))
    run(store.set("s2", b"2", 60, ["sub:u1", "sid:y"]))
    run(store.set("s3", b"3", 60, ["sub:u2", "sid:z"]))
    assert run(store.delete_tagged("sid:x")) == 1
    assert run(store.get("s1")) is None and run(store.get("s2")) == b"2"
    assert run(store.delete_tagged("sub:u1")) == 1
    assert run(store.get("s2")) is None
    assert run(store.get("s3")) == b"3"
    assert run(store.delete_tagged("sub:nobody")) == 0


def test_lock_is_exclusive_and_owned(store_factory: Callable[[], SessionStore], run: Runner) -> None:
    store = store_factory()
    assert run(store.acquire_lock("l", "me", 5)) is True
    assert run(store.acquire_lock("l", "you", 5)) is False
    run(store.release_lock("l", "you"))  # not the owner: no effect
    assert run(store.acquire_lock("l", "you", 5)) is False
    run(store.release_lock("l", "me"))
    assert run(store.acquire_lock("l", "you", 5)) is True


def test_memory_ttl_and_lock_expiry(run: Runner) -> None:
    clock = MovableClock()
    store = MemoryStore(clock=clock)
    run(store.set("a", b"1", 10, ["sub:u"]))
    assert run(store.acquire_lock("l", "dead-holder", 2))
    clock.now += 3
    assert run(store.acquire_lock("l", "next", 2)) is True  # the dead holder's lock expired
    clock.now += 8
    assert run(store.get("a")) is None
    assert run(store.delete_tagged("sub:u")) == 0  # the index was cleaned with the entry


def test_memory_store_bound_evicts_least_recently_used(run: Runner) -> None:
    store = MemoryStore(max_sessions=3)
    for key in ("a", "b", "c"):
        run(store.set(key, key.encode(), 60, [f"sub:{key}"]))
    run(store.get("a"))  # a is now the most recently used
    run(store.set("d", b"d", 60, ["sub:d"]))
    assert len(store) == 3
    assert run(store.get("b")) is None
    assert run(store.get("a")) == b"a"
    assert run(store.delete_tagged("sub:b")) == 0


def test_redis_ttl_and_index_expire(redis_url: str, run: Runner) -> None:
    import redis

    store = RedisStore.from_url(redis_url, prefix="ttl:")
    run(store.set("a", b"1", 100, ["sub:u"]))
    raw = redis.Redis.from_url(redis_url)
    assert 95 <= raw.ttl("ttl:a") <= 100
    assert 95 <= raw.ttl("ttl:tag:sub:u") <= 100
    run(store.set("b", b"1", 500, ["sub:u"]))
    assert raw.ttl("ttl:tag:sub:u") > 400  # the index lives as long as its longest entry
    assert run(store.acquire_lock("l", "me", 0.2))
    assert 0 < raw.pttl("ttl:lock:l") <= 200


def test_redis_lock_expires_when_holder_dies(redis_url: str, run: Runner) -> None:
    import time

    store = RedisStore.from_url(redis_url, prefix="lock:")
    assert run(store.acquire_lock("l", "dead", 0.15))
    assert run(store.acquire_lock("l", "next", 5)) is False
    time.sleep(0.25)
    assert run(store.acquire_lock("l", "next", 5)) is True


def test_redis_values_are_only_what_the_middleware_wrote(redis_url: str, run: Runner) -> None:
    store = RedisStore.from_url(redis_url, prefix="p:")
    run(store.set("k", b"\x00binary\xff", 60))
    assert run(store.get("k")) == b"\x00binary\xff"


def test_redis_deletes_unfile_keys_from_every_index(redis_url: str, run: Runner) -> None:
    import redis

    store = RedisStore.from_url(redis_url, prefix="idx:")
    raw = redis.Redis.from_url(redis_url)
    run(store.set("s1", b"1", 60, ["sub:u", "sid:a"]))
    run(store.set("s2", b"2", 60, ["sub:u", "sid:b"]))
    assert run(store.delete_tagged("sid:a")) == 1
    assert raw.smembers("idx:tag:sub:u") == {b"idx:s2"}  # no dangling entry for s1
    run(store.delete("s2"))
    assert not raw.exists("idx:tag:sub:u", "idx:tag:sid:b", "idx:tags:s2")
    assert raw.keys("idx:*") == []


def test_members_lists_the_live_keys_of_a_tag_with_their_values(store_factory: Callable[[], SessionStore],
                                                                run: Runner) -> None:
    store = store_factory()
    assert run(store.members("sub:u1")) == []
    run(store.set("session:a", b"\x00value-a\xff", 60, ["sub:u1", "sid:x"]))
    run(store.set("session:b", b"value-b", 60, ["sub:u1"]))
    run(store.set("session:c", b"value-c", 60, ["sub:u2"]))
    assert sorted(run(store.members("sub:u1"))) == [("session:a", b"\x00value-a\xff"), ("session:b", b"value-b")]
    assert run(store.members("sid:x")) == [("session:a", b"\x00value-a\xff")]
    run(store.set("session:b", b"value-b2", 60, ["sub:u1"]))  # rewritten: its new value
    run(store.delete("session:a"))
    assert run(store.members("sub:u1")) == [("session:b", b"value-b2")]
    assert run(store.delete_tagged("sub:u1")) == 1
    assert run(store.members("sub:u1")) == []


def test_memory_members_leaves_out_expired_keys(run: Runner) -> None:
    clock = MovableClock()
    store = MemoryStore(clock=clock)
    run(store.set("old", b"1", 10, ["sub:u"]))
    run(store.set("new", b"2", 100, ["sub:u"]))
    clock.now += 11
    assert run(store.members("sub:u")) == [("new", b"2")]


def test_redis_members_leaves_out_expired_keys(redis_url: str, run: Runner) -> None:
    import redis

    store = RedisStore.from_url(redis_url, prefix="m:")
    run(store.set("old", b"1", 100, ["sub:u"]))
    run(store.set("new", b"2", 100, ["sub:u"]))
    redis.Redis.from_url(redis_url).delete("m:old")  # expired: gone, still in the index
    assert run(store.members("sub:u")) == [("new", b"2")]
