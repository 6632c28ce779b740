"""`RedisStore`: sessions in Redis, shared by every worker and machine of an app.

Needs the `redis` package: `pip install 'logto-middleware[redis]'`. Each operation is one
round trip (a command or a short Lua script), written once: it yields a `Call` that the sync
driver runs on `redis.Redis` and the async driver on `redis.asyncio.Redis`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

from ..errors import StoreUnavailable
from ..flow import Call, Flow

__all__ = ["RedisStore"]

try:
    import redis
    import redis.asyncio as aioredis
except ImportError:  # pragma: no cover - exercised only without the extra
    redis = None  # type: ignore[assignment]

# Store the value and file its key under each tag (KEYS[2] remembers the key's tags, so that a
# delete can unfile it); a tag set lives as long as its longest entry.
_SET = """
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
# Delete keys and unfile them from every tag set they are in. KEYS[1] is a tag set (delete all
# its keys) when ARGV[1] is "tag", else the one key to delete. ARGV[2] is the store's prefix: the
# tags of `<prefix><key>` are filed under `<prefix>tags:<key>`.
_DELETE = """
local keys = {KEYS[1]}
if ARGV[1] == 'tag' then keys = redis.call('SMEMBERS', KEYS[1]) end
local n = 0
for _, key in ipairs(keys) do
  local tags_key = ARGV[2] .. 'tags:' .. string.sub(key, #ARGV[2] + 1)
  for _, tag in ipairs(redis.call('SMEMBERS', tags_key)) do redis.call('SREM', tag, key) end
  redis.call('DEL', tags_key)
  n = n + redis.call('DEL', key)
end
if ARGV[1] == 'tag' then redis.call('DEL', KEYS[1]) end
return n
"""
# The live keys of a tag set and their values, flat: key, value, key, value... (an expired key
# is still in its set until a delete unfiles it: skipped).
_MEMBERS = """
local found = {}
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local value = redis.call('GET', key)
  if value then found[#found + 1] = key; found[#found + 1] = value end
end
return found
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisStore:
    """Sessions in Redis under `prefix`, with a TTL equal to the session's expiry and an index
    per user (`sub`) and per Logto session (`sid`) for sign-out everywhere and back-channel
    logout. One connection pool per flavour; nothing connects until the first request."""

    def __init__(self, url: str = "redis://localhost:6379/0", *, prefix: str = "logto:",
                 timeout: float = 2.0, **options: Any) -> None:
        if redis is None:
            raise ImportError("RedisStore needs the redis package: pip install 'logto-middleware[redis]'")
        self.prefix = prefix
        self._url = url
        self._settings = {"socket_timeout": timeout, "socket_connect_timeout": timeout, **options}
        self._sync = redis.Redis.from_url(url, **self._settings)
        # asyncio connections belong to one event loop: one client per loop.
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
            weakref.WeakKeyDictionary())

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        """A store for `redis://` or `rediss://` URL `url`."""
        return cls(url, **options)

    async def _execute_async(self, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            client = self._async[loop] = aioredis.Redis.from_url(self._url, **self._settings)
        return await client.execute_command(*args)  # type: ignore[no-untyped-call]

    def _command(self, *args: Any) -> Flow[Any]:
        try:
            return (yield Call(self._sync.execute_command, self._execute_async, args))
        except redis.RedisError as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from None

    def get(self, key: str) -> Flow[bytes | None]:
        value = yield from self._command("GET", self.prefix + key)
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: bytes, ttl: int, tags: Sequence[str] = ()) -> Flow[None]:
        full = self.prefix + key
        yield from self._command("EVAL", _SET, 2, full, self.prefix + "tags:" + key, value, max(1, int(ttl)),
                                 *(self.prefix + "tag:" + tag for tag in tags))

    def delete(self, key: str) -> Flow[None]:
        yield from self._command("EVAL", _DELETE, 1, self.prefix + key, "key", self.prefix)

    def delete_tagged(self, tag: str) -> Flow[int]:
        deleted = yield from self._command("EVAL", _DELETE, 1, self.prefix + "tag:" + tag, "tag", self.prefix)
        return int(deleted)

    def members(self, tag: str) -> Flow[list[tuple[str, bytes]]]:
        found = yield from self._command("EVAL", _MEMBERS, 1, self.prefix + "tag:" + tag)
        start = len(self.prefix.encode())
        pairs = zip(found[0::2], found[1::2], strict=True)
        return [(key[start:].decode("utf-8", "replace"), value) for key, value in pairs
                if isinstance(key, bytes) and isinstance(value, bytes)]

    def acquire_lock(self, name: str, owner: str, ttl: float) -> Flow[bool]:
        taken = yield from self._command("SET", self.prefix + "lock:" + name, owner, "NX", "PX",
                                         max(1, int(ttl * 1000)))
        return bool(taken)

    def release_lock(self, name: str, owner: str) -> Flow[None]:
        yield from self._command("EVAL", _RELEASE, 1, self.prefix + "lock:" + name, owner)

    def close(self) -> None:
        """Close the sync pool (the asyncio pools close with their event loops)."""
        self._sync.close()
