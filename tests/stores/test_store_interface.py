"""One suite for every store, through both drivers: the interface's contract."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from redis_support import DEPLOYMENTS, deployment_url

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


@pytest.fixture(params=["memory", *DEPLOYMENTS])
def store_factory(request: pytest.FixtureRequest) -> Callable[[], SessionStore]:
    """MemoryStore, and RedisStore on each Redis deployment (standalone, cluster, sentinel, TLS)."""
    if request.param == "memory":
        return MemoryStore
    url = deployment_url(request, request.param)
    return lambda: RedisStore.from_url(url, prefix="test:")


# Keys and tags are shaped as the middleware's: a user's session and indexes share a hash tag
# (`{u1}`), which a Redis Cluster needs to touch them in one script.
def test_set_get_delete(store_factory: Callable[[], SessionStore], run: Runner) -> None:
    store = store_factory()
    assert run(store.get("session:{u1}a")) is None
    run(store.set("session:{u1}a", b"value-a", 60, ["sub:{u1}alice"]))
    assert run(store.get("session:{u1}a")) == b"value-a"
    run(store.set("session:{u1}a", b"value-b", 60, ["sub:{u1}alice"]))
    assert run(store.get("session:{u1}a")) == b"value-b"
    run(store.delete("session:{u1}a"))
    assert run(store.get("session:{u1}a")) is None
    run(store.set("record", b"untagged", 60))
    assert run(store.get("record")) == b"untagged"


def test_delete_tagged_removes_every_session_of_a_user(store_factory: Callable[[], SessionStore], run: Runner) -> None:
    store = store_factory()
    run(store.set("s:{u1}1", b"1", 60, ["sub:{u1}alice", "sid:{u1}x"]))
    run(store.set("s:{u1}2", b"2", 60, ["sub:{u1}alice", "sid:{u1}y"]))
    run(store.set("s:{u2}3", b"3", 60, ["sub:{u2}bob", "sid:{u2}z"]))
    assert run(store.delete_tagged("sid:{u1}x")) == 1
    assert run(store.get("s:{u1}1")) is None and run(store.get("s:{u1}2")) == b"2"
    assert run(store.delete_tagged("sub:{u1}alice")) == 1
    assert run(store.get("s:{u1}2")) is None
    assert run(store.get("s:{u2}3")) == b"3"
    assert run(store.delete_tagged("sub:{u1}nobody")) == 0
    assert run(store.delete_tagged("sub:nobody")) == 0


def test_members_lists_the_live_keys_of_a_tag(store_factory: Callable[[], SessionStore], run: Runner) -> None:
    store = store_factory()
    # Keys and tags shaped as the middleware's: one hash tag per user.
    run(store.set("session:{u1}a", b"1", 60, ["sub:{u1}alice", "sid:{u1}x"]))
    run(store.set("session:{u1}b", b"2", 60, ["sub:{u1}alice", "sid:{u1}y"]))
    run(store.set("session:{u2}c", b"3", 60, ["sub:{u2}bob"]))
    assert sorted(run(store.members("sub:{u1}alice"))) == [("session:{u1}a", b"1"), ("session:{u1}b", b"2")]
    run(store.delete("session:{u1}a"))
    assert run(store.members("sub:{u1}alice")) == [("session:{u1}b", b"2")]
    assert run(store.members("sid:{u1}x")) == []
    assert run(store.members("sub:{u3}nobody")) == []
    assert run(store.delete_tagged("sub:{u1}alice")) == 1
    assert run(store.members("sub:{u1}alice")) == []
    assert run(store.members("sub:{u2}bob")) == [("session:{u2}c", b"3")]


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
    assert 95 <= raw.ttl("ttl:idx:sub:u") <= 100
    run(store.set("b", b"1", 500, ["sub:u"]))
    assert raw.ttl("ttl:idx:sub:u") > 400  # the index lives as long as its longest entry
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


def test_redis_indexes_stay_bounded(redis_url: str, run: Runner) -> None:
    """An index entry goes when its key is deleted through the index, when the index is read,
    or once its key expired (on the next write): an index never grows without bound."""
    import redis

    store = RedisStore.from_url(redis_url, prefix="p:")
    raw = redis.Redis.from_url(redis_url)
    run(store.set("s1", b"1", 60, ["sub:u", "sid:a"]))
    run(store.set("s2", b"2", 60, ["sub:u", "sid:b"]))
    assert run(store.delete_tagged("sid:a")) == 1
    assert not raw.exists("p:idx:sid:a")
    run(store.delete("s2"))
    assert raw.zrange("p:idx:sub:u", 0, -1) == [b"s1", b"s2"]  # deleted, not through this index
    assert run(store.members("sub:u")) == []
    assert not raw.exists("p:idx:sub:u")  # reading it unfiled them
    run(store.set("s3", b"3", 1, ["sub:u"]))
    raw.zadd("p:idx:sub:u", {"s1": 1})  # as if s1 had expired long ago, never read since
    run(store.set("s4", b"4", 60, ["sub:u"]))
    assert sorted(raw.zrange("p:idx:sub:u", 0, -1)) == [b"s3", b"s4"]
    assert run(store.delete_tagged("sub:u")) == 2
    assert raw.keys("p:*") == [b"p:idx:sid:b"]  # never read again: it runs out with s2's TTL
    assert 0 < raw.ttl("p:idx:sid:b") <= 60


# The scripts of the layout before the per-user hash tags (sets `tag:<tag>` of whole key names,
# and `tags:<key>` of a key's tags), to store sessions as the earlier version did.
_EARLIER_SET = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('DEL', KEYS[2])
for i = 3, #ARGV do
  local tag = ARGV[i]
  redis.call('SADD', tag, KEYS[1])
  redis.call('SADD', KEYS[2], tag)
  if redis.call('TTL', tag) < tonumber(ARGV[2]) then redis.call('EXPIRE', tag, ARGV[2]) end
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""


def earlier_set(url: str, prefix: str, key: str, value: bytes, ttl: int, tags: list[str]) -> None:
    import redis

    redis.Redis.from_url(url).eval(_EARLIER_SET, 2, prefix + key, prefix + "tags:" + key, value, ttl,
                                   *(prefix + "tag:" + tag for tag in tags))


def test_redis_deletes_what_the_earlier_layout_filed(redis_url: str, run: Runner) -> None:
    """Sessions stored before the upgrade are still ended by their tag."""
    store = RedisStore.from_url(redis_url, prefix="logto:")
    earlier_set(redis_url, "logto:", "session:old1", b"1", 60, ["sub:alice", "sid:x"])
    earlier_set(redis_url, "logto:", "session:old2", b"2", 60, ["sub:alice"])
    run(store.set("session:old2", b"2b", 60, ["sub:{aa}alice"]))  # written again since the upgrade
    assert run(store.get("session:old1")) == b"1"
    assert run(store.delete_tagged("sid:x")) == 1
    assert run(store.get("session:old1")) is None
    assert run(store.delete_tagged("sub:alice")) == 1
    assert run(store.get("session:old2")) is None


def test_redis_scripts_are_called_by_sha_and_reloaded_after_a_flush(
        store_factory: Callable[[], SessionStore], run: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    store = store_factory()
    if not isinstance(store, RedisStore):
        return  # a store in memory has no scripts
    sent: list[str] = []
    execute, execute_async = store._execute, store._execute_async

    def spy(*args: Any) -> Any:
        sent.append(args[0])
        return execute(*args)

    async def spy_async(*args: Any) -> Any:
        sent.append(args[0])
        return await execute_async(*args)

    monkeypatch.setattr(store, "_execute", spy)
    monkeypatch.setattr(store, "_execute_async", spy_async)
    run(store.set("session:{u}a", b"1", 60, ["sub:{u}alice"]))
    flush_scripts(store)
    sent.clear()
    run(store.set("session:{u}b", b"2", 60, ["sub:{u}alice"]))
    assert sent == ["EVALSHA", "EVAL"]  # the server forgot it: sent once in full
    sent.clear()
    run(store.set("session:{u}c", b"3", 60, ["sub:{u}alice"]))
    assert sent == ["EVALSHA"]  # one round trip again
    assert sorted(k for k, _ in run(store.members("sub:{u}alice"))) == ["session:{u}a", "session:{u}b",
                                                                          "session:{u}c"]


def flush_scripts(store: RedisStore) -> None:
    """SCRIPT FLUSH on every node (a cluster's too), as a restart or a new master would."""
    client = store._sync_client()
    nodes = client.get_primaries() if hasattr(client, "get_primaries") else [None]
    for node in nodes:
        if node is None:
            client.execute_command("SCRIPT", "FLUSH")
        else:
            client.execute_command("SCRIPT", "FLUSH", target_nodes=node)


def test_redis_store_takes_ready_clients(redis_url: str, run: Runner) -> None:
    """A client the app made (for options a URL cannot say), sync and asyncio, or factories."""
    import redis
    import redis.asyncio

    made: list[str] = []

    def make_async() -> Any:
        made.append("async")
        return redis.asyncio.Redis.from_url(redis_url)

    store = RedisStore(client=redis.Redis.from_url(redis_url, decode_responses=True), async_client=make_async)
    run(store.set("session:{u}a", b"1", 60, ["sub:{u}alice"]))
    assert run(store.get("session:{u}a")) == b"1"
    assert run(store.members("sub:{u}alice")) == [("session:{u}a", b"1")]
    assert made == (["async"] if run.flavour == "async" else [])
    only_async = RedisStore(client=redis.asyncio.Redis.from_url(redis_url))
    if run.flavour == "async":
        assert run(only_async.get("session:{u}a")) == b"1"
    else:
        with pytest.raises(RuntimeError, match="client="):
            run(only_async.get("session:{u}a"))


@pytest.mark.parametrize("url", ["redis+cluster://", "redis+sentinel://s1:26379", "redis+sentinel://s1:26379/a/b",
                                 "redis+cluster://n1:7000/3", "redis+cluster://n1:port", "redis+cluster://n1:1?db=1",
                                 "memcached://host"])
def test_redis_urls_that_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        RedisStore.from_url(url)


def test_redis_prefix_with_half_a_hash_tag_is_refused() -> None:
    with pytest.raises(ValueError, match="hash tag"):
        RedisStore.from_url("redis://localhost", prefix="a{b:")
    RedisStore.from_url("redis://localhost", prefix="{app}:")


@pytest.mark.parametrize("scheme", ["redis://{}/0", "redis+cluster://{}", "redis+sentinel://{}/mymaster",
                                    "rediss://{}/0"])
def test_redis_unreachable_is_store_unavailable(scheme: str, run: Runner) -> None:
    """Whatever the deployment, no answer is `StoreUnavailable` (the 503 page), never another error."""
    from redis_support import free_port

    from logto_middleware.errors import StoreUnavailable

    store = RedisStore.from_url(scheme.format(f"127.0.0.1:{free_port()}"), timeout=0.2)
    with pytest.raises(StoreUnavailable):
        run(store.get("session:{u}a"))
    with pytest.raises(StoreUnavailable):
        run(store.set("session:{u}a", b"1", 60, ["sub:{u}alice"]))


def test_members_lists_the_live_keys_of_a_tag_with_their_values(store_factory: Callable[[], SessionStore],
                                                                run: Runner) -> None:
    # The keys of one user share a hash tag, as the middleware's do (one Redis Cluster slot).
    store = store_factory()
    assert run(store.members("sub:{u1}u1")) == []
    run(store.set("session:{u1}a", b"\x00value-a\xff", 60, ["sub:{u1}u1", "sid:{u1}x"]))
    run(store.set("session:{u1}b", b"value-b", 60, ["sub:{u1}u1"]))
    run(store.set("session:{u2}c", b"value-c", 60, ["sub:{u2}u2"]))
    assert sorted(run(store.members("sub:{u1}u1"))) == [("session:{u1}a", b"\x00value-a\xff"),
                                                      ("session:{u1}b", b"value-b")]
    assert run(store.members("sid:{u1}x")) == [("session:{u1}a", b"\x00value-a\xff")]
    run(store.set("session:{u1}b", b"value-b2", 60, ["sub:{u1}u1"]))  # rewritten: its new value
    run(store.delete("session:{u1}a"))
    assert run(store.members("sub:{u1}u1")) == [("session:{u1}b", b"value-b2")]
    assert run(store.delete_tagged("sub:{u1}u1")) == 1
    assert run(store.members("sub:{u1}u1")) == []


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
