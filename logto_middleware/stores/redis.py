"""`RedisStore`: sessions in Redis, shared by every worker and machine of an app.

Needs the `redis` package: `pip install 'logto-middleware[redis]'`. Works on a standalone server,
a Redis Cluster and behind Sentinel, over TLS or not (see `RedisStore.from_url`). Each operation
is written once: it yields a `Call` that the sync driver runs on a redis-py client and the async
driver on its asyncio twin.

Layout (cluster-safe: every script declares every key it touches, and the keys of one operation
share a slot when the caller's key and tags share a hash tag, as the middleware's do):

- `<prefix><key>`: a value, with its TTL;
- `<prefix>idx:<tag>`: the keys filed under `tag`, a sorted set scored by each key's expiry, so
  that expired entries are pruned on the next write without touching their (gone) keys;
- `<prefix>tag:<tag>` and `<prefix>tags:<key>`: the sets of the earlier layout, read by
  `delete_tagged` only, so that sign-out everywhere still ends sessions stored before the
  upgrade (those sets run out with their sessions).

Scripts are called by SHA (`EVALSHA`); a server that does not know one (`NOSCRIPT`: a new master
after a failover, a `SCRIPT FLUSH`) gets the full text once (`EVAL`, which also caches it there).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from ..errors import StoreUnavailable
from ..flow import Call, Flow

__all__ = ["RedisStore"]

try:
    import redis
    import redis.asyncio as aioredis
    import redis.asyncio.cluster as aiocluster
    import redis.asyncio.sentinel as aiosentinel
    import redis.cluster
    import redis.sentinel
except ImportError:  # pragma: no cover - exercised only without the extra
    redis = None  # type: ignore[assignment]


@dataclass(frozen=True)
class _Script:
    text: str

    @property
    def sha(self) -> str:
        # The script's name on the server (SCRIPT LOAD's answer), not a security use.
        return hashlib.sha1(self.text.encode(), usedforsecurity=False).hexdigest()


# KEYS[1] the value, KEYS[2..] the indexes; ARGV: value, ttl, the key's name in the indexes.
# Entries that expired a second ago or more are pruned: their keys are gone by Redis's TTL.
_SET = _Script("""
if redis.replicate_commands then redis.replicate_commands() end
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
local now = tonumber(redis.call('TIME')[1])
for i = 2, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - 1)
  redis.call('ZADD', KEYS[i], now + ttl, ARGV[3])
  if redis.call('TTL', KEYS[i]) < ttl then redis.call('EXPIRE', KEYS[i], ttl) end
end
return 1
""")
# KEYS[1] an index, KEYS[2..] the keys read from it (ARGV: their names in it). Deletes them and
# unfiles them; returns {deleted, the entries filed meanwhile (the caller goes on with them)}.
_DELETE_TAGGED = _Script("""
local n = 0
for i = 2, #KEYS do
  n = n + redis.call('DEL', KEYS[i])
  redis.call('ZREM', KEYS[1], ARGV[i - 1])
end
local rest = redis.call('ZRANGE', KEYS[1], 0, -1)
if #rest == 0 then redis.call('DEL', KEYS[1]) end
return {n, rest}
""")
# As above, for a set of the earlier layout: KEYS[1] the set, KEYS[2..ARGV[1]+1] its keys, then
# their `tags:` sets.
_DELETE_LEGACY = _Script("""
local n = 0
for i = 2, #KEYS do
  local gone = redis.call('DEL', KEYS[i])
  if i <= tonumber(ARGV[1]) + 1 then n = n + gone end
end
redis.call('DEL', KEYS[1])
return n
""")
# KEYS[1] an index, KEYS[2..] the keys read from it (ARGV: their names): {name, value, ...} of
# the live ones; the dead ones (deleted, not yet expired from the index) are unfiled.
_MEMBERS = _Script("""
local out = {}
for i = 2, #KEYS do
  local value = redis.call('GET', KEYS[i])
  if value then
    out[#out + 1] = ARGV[i - 1]
    out[#out + 1] = value
  else
    redis.call('ZREM', KEYS[1], ARGV[i - 1])
  end
end
return out
""")
_RELEASE = _Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")

# Rounds of `delete_tagged` while sessions keep being filed under the tag as it deletes them.
_DELETE_ROUNDS = 8

# What a `redis+cluster://` or `redis+sentinel://` URL's query may set (as in redis-py's own
# `from_url`), and how each value is read.
_BOOL = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
_QUERY: dict[str, Callable[[str], Any]] = {
    "ssl_ca_certs": str, "ssl_ca_path": str, "ssl_certfile": str, "ssl_keyfile": str, "ssl_cert_reqs": str,
    "ssl_check_hostname": _BOOL.__getitem__, "ssl_password": str, "client_name": str,
    "socket_timeout": float, "socket_connect_timeout": float,
    "sentinel_username": str, "sentinel_password": str,
}


def _errors() -> tuple[type[BaseException], ...]:
    # RedisClusterException (no topology at all, a slot no node serves) is not a RedisError.
    return (redis.RedisError, redis.exceptions.RedisClusterException, OSError)


class RedisStore:
    """Sessions in Redis under `prefix`, with a TTL equal to the session's expiry and an index
    per user (`sub`) and per Logto session (`sid`) for sign-out everywhere and back-channel
    logout. Nothing connects until the first request.

    Give a URL (see `from_url`), or a ready redis-py client for anything a URL cannot say:
    `client` a sync client (`redis.Redis`, `redis.cluster.RedisCluster`, a Sentinel's
    `master_for(...)`) for WSGI, `async_client` its asyncio twin for ASGI; either may be a
    factory (no arguments) instead, called once (for asyncio: once per event loop, as asyncio
    connections belong to one loop). `prefix` may hold a whole hash tag (`{myapp}:`) to keep
    everything in one cluster slot, or no brace at all.
    """

    def __init__(self, url: str | None = None, *, prefix: str = "logto:", timeout: float = 2.0,
                 client: Any = None, async_client: Any = None, **options: Any) -> None:
        if redis is None:
            raise ImportError("RedisStore needs the redis package: pip install 'logto-middleware[redis]'")
        opening = prefix.find("{")
        if opening >= 0 and prefix.find("}", opening) <= opening + 1:
            raise ValueError("RedisStore prefix: a '{' must open a whole hash tag ('{app}:'), or leave braces out")
        self.prefix = prefix
        if client is not None and not callable(client) and _is_async(client):
            client, async_client = None, client if async_client is None else async_client
        if url is None and client is None and async_client is None:
            url = "redis://localhost:6379/0"
        settings = {"socket_timeout": timeout, "socket_connect_timeout": timeout, **options}
        make_sync, make_async = _factories(url, settings) if url is not None else (None, None)
        self._make_sync: Callable[[], Any] | None = make_sync
        self._make_async: Callable[[], Any] | None = make_async
        self._sync: Any = None
        self._making = threading.Lock()  # one sync client, whichever thread asks first
        if client is not None:
            self._make_sync = client if callable(client) and not hasattr(client, "execute_command") else None
            self._sync = None if self._make_sync is not None else client
        self._async_client: Any = None
        if async_client is not None:
            if callable(async_client) and not hasattr(async_client, "execute_command"):
                self._make_async = async_client
            else:
                self._make_async, self._async_client = None, async_client
        # asyncio connections belong to one event loop: one client per loop.
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        """A store for `url`:

        - `redis://[[user]:password@]host[:port][/db]`, `rediss://...` (TLS), `unix:///path?db=0`;
        - `redis+cluster://[[user]:password@]host:port[,host:port...]`: a Redis Cluster, any of
          its nodes to start from;
        - `redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]`: the
          master that these sentinels name `service_name`; the password is the data nodes';
          the sentinels' own is `?sentinel_password=...` (and `sentinel_username=...`);
        - `rediss+cluster://`, `rediss+sentinel://`: the same over TLS (to the sentinels too).

        TLS settings go in the query as in redis-py: `ssl_ca_certs`, `ssl_certfile`,
        `ssl_keyfile`, `ssl_cert_reqs` (`none`, `optional`, `required`), `ssl_check_hostname`.
        """
        return cls(url, **options)

    # -- I/O ---------------------------------------------------------------------------------

    def _sync_client(self) -> Any:
        if self._sync is None:
            if self._make_sync is None:
                raise RuntimeError("RedisStore got only an asyncio client: pass client= for the sync (WSGI) side")
            with self._making:
                if self._sync is None:
                    self._sync = self._make_sync()
        return self._sync

    def _execute(self, *args: Any) -> Any:
        return self._sync_client().execute_command(*args)

    async def _execute_async(self, *args: Any) -> Any:
        client = self._async_client
        if client is None:
            loop = asyncio.get_running_loop()
            client = self._async.get(loop)
            if client is None:
                if self._make_async is None:
                    raise RuntimeError("RedisStore got only a sync client: "
                                       "pass async_client= for the asyncio (ASGI) side")
                client = self._async[loop] = self._make_async()
        return await client.execute_command(*args)

    def _command(self, *args: Any) -> Flow[Any]:
        try:
            return (yield Call(self._execute, self._execute_async, args))
        except _errors() as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from None

    def _script(self, script: _Script, keys: Sequence[str], args: Sequence[Any]) -> Flow[Any]:
        try:
            return (yield Call(self._execute, self._execute_async, ("EVALSHA", script.sha, len(keys), *keys, *args)))
        except redis.exceptions.NoScriptError:
            pass  # that server never saw it (a new master, a SCRIPT FLUSH): EVAL caches it there
        except _errors() as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from None
        return (yield from self._command("EVAL", script.text, len(keys), *keys, *args))

    # -- the store protocol ------------------------------------------------------------------

    def get(self, key: str) -> Flow[bytes | None]:
        value = yield from self._command("GET", self.prefix + key)
        return _as_bytes(value) if value is not None else None

    def set(self, key: str, value: bytes, ttl: int, tags: Sequence[str] = ()) -> Flow[None]:
        ttl = max(1, int(ttl))
        if not tags:
            yield from self._command("SET", self.prefix + key, value, "EX", ttl)
            return
        yield from self._script(_SET, [self.prefix + key, *(self._index(tag) for tag in tags)], [value, ttl, key])

    def delete(self, key: str) -> Flow[None]:
        # Its index entries go when they expire, or when an index is next read.
        yield from self._command("DEL", self.prefix + key)

    def delete_tagged(self, tag: str) -> Flow[int]:
        index = self._index(tag)
        names = yield from self._command("ZRANGE", index, 0, -1)
        deleted = 0
        for _ in range(_DELETE_ROUNDS):
            if not names:
                break
            keys = [_as_str(name) for name in names]
            result = yield from self._script(_DELETE_TAGGED, [index, *(self.prefix + k for k in keys)], keys)
            deleted += int(result[0])
            names = result[1]
        return deleted + (yield from self._delete_legacy(tag))

    def _delete_legacy(self, tag: str) -> Flow[int]:
        """Delete the keys filed under `tag` by the earlier layout (a set of whole key names)."""
        legacy = self.prefix + "tag:" + tag
        members = yield from self._command("SMEMBERS", legacy)
        if not members:
            return 0
        keys = [_as_str(name) for name in members]
        records = [self.prefix + "tags:" + k[len(self.prefix):] for k in keys if k.startswith(self.prefix)]
        return int((yield from self._script(_DELETE_LEGACY, [legacy, *keys, *records], [len(keys)])))

    def members(self, tag: str) -> Flow[list[tuple[str, bytes]]]:
        index = self._index(tag)
        names = yield from self._command("ZRANGE", index, 0, -1)
        if not names:
            return []
        keys = [_as_str(name) for name in names]
        flat = yield from self._script(_MEMBERS, [index, *(self.prefix + k for k in keys)], keys)
        return [(_as_str(flat[i]), _as_bytes(flat[i + 1])) for i in range(0, len(flat), 2)]

    def acquire_lock(self, name: str, owner: str, ttl: float) -> Flow[bool]:
        taken = yield from self._command("SET", self.prefix + "lock:" + name, owner, "NX", "PX",
                                         max(1, int(ttl * 1000)))
        return bool(taken)

    def release_lock(self, name: str, owner: str) -> Flow[None]:
        yield from self._script(_RELEASE, [self.prefix + "lock:" + name], [owner])

    def _index(self, tag: str) -> str:
        return self.prefix + "idx:" + tag

    def close(self) -> None:
        """Close the sync client (the asyncio ones close with their event loops)."""
        if self._sync is not None:
            self._sync.close()


def _as_bytes(value: Any) -> bytes:
    # A client made with decode_responses=True answers str.
    return value.encode() if isinstance(value, str) else bytes(value)


def _as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _is_async(client: Any) -> bool:
    return inspect.iscoroutinefunction(getattr(client, "execute_command", None))


# -- URLs ------------------------------------------------------------------------------------

REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://",
                 "redis+sentinel://", "rediss+sentinel://")


def check_url(url: str) -> None:
    """Raise ValueError (naming no credential) when `url` is not a Redis URL `from_url` takes."""
    _factories(url, {})

def _factories(url: str, settings: dict[str, Any]) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(make the sync client, make the asyncio client) for `url`."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError("a Redis URL looks like redis://host:port/0")
    if scheme in ("redis", "rediss", "unix"):
        return (lambda: redis.Redis.from_url(url, **settings),
                lambda: aioredis.Redis.from_url(url, **settings))
    if scheme not in ("redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel"):
        raise ValueError("a Redis URL starts with redis://, rediss://, unix://, redis+cluster://, "
                         "rediss+cluster://, redis+sentinel:// or rediss+sentinel://")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    options = dict(settings)
    sentinel_options: dict[str, Any] = {}
    if "@" in netloc:
        credentials, netloc = netloc.rsplit("@", 1)
        user, _, password = credentials.partition(":")
        if user:
            options["username"] = unquote(user)
        if password:
            options["password"] = unquote(password)
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _QUERY:
            raise ValueError(f"a Redis URL does not take the query parameter {name!r}")
        try:
            parsed = _QUERY[name](value)
        except (KeyError, ValueError):
            raise ValueError(f"a Redis URL's {name} cannot be {value!r}") from None
        if name.startswith("sentinel_"):
            sentinel_options[name.removeprefix("sentinel_")] = parsed
        else:
            options[name] = parsed
    if scheme.startswith("rediss"):
        options["ssl"] = True
    nodes = [_host_port(node) for node in netloc.split(",") if node]
    if not nodes:
        raise ValueError("a redis+cluster:// or redis+sentinel:// URL names at least one host:port")
    if scheme.endswith("cluster"):
        if path.strip("/") not in ("", "0"):
            raise ValueError("a Redis Cluster has only database 0")
        return (lambda: redis.cluster.RedisCluster(
                    startup_nodes=[redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call]
                                   for h, p in nodes], **options),
                lambda: aiocluster.RedisCluster(
                    startup_nodes=[aiocluster.ClusterNode(h, p) for h, p in nodes], **options))
    parts = [unquote(p) for p in path.split("/") if p]
    if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError("a redis+sentinel:// URL ends with /service_name or /service_name/db")
    service, db = parts[0], int(parts[1]) if len(parts) == 2 else 0
    # The sentinels get the same timeouts and TLS settings, and their own credentials.
    sentinel_options = {**{k: v for k, v in options.items() if k.startswith(("socket_", "ssl"))}, **sentinel_options}
    return (lambda: redis.sentinel.Sentinel(nodes, sentinel_kwargs=sentinel_options, **options)
            .master_for(service, db=db),
            lambda: aiosentinel.Sentinel(nodes, sentinel_kwargs=sentinel_options, **options)
            .master_for(service, db=db))


def _host_port(node: str) -> tuple[str, int]:
    host, port = node, "6379" if not node.startswith("[") else ""
    if node.startswith("["):  # [ipv6]:port
        host, _, after = node[1:].partition("]")
        port = after.removeprefix(":") or "6379"
    elif ":" in node:
        host, port = node.rsplit(":", 1)
    if not host or not port.isdigit():
        raise ValueError(f"a Redis URL's hosts are host:port, not {node!r}")
    return host, int(port)
