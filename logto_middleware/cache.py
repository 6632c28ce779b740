"""A bounded mapping for the per-request caches: reads are one `dict.get` (no lock, no
recency bookkeeping); inserts past the bound evict the oldest entry."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["BoundedCache", "ExpiringCache", "RecentKeys"]

K = TypeVar("K")
H = TypeVar("H", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most `maxsize` entries, oldest evicted first. Safe under threads and asyncio."""

    get: Callable[[K], V | None]
    """The entry of `key`, or None."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: dict[K, V] = {}
        self._lock = threading.Lock()
        # The dict's own method: a read is one C call (atomic under the GIL), no Python frame;
        # these lookups run several times on every signed-in request.
        self.get = self._data.get

    def __len__(self) -> int:
        return len(self._data)

    def set(self, key: K, value: V) -> None:
        with self._lock:
            self._data.pop(key, None)
            self._data[key] = value
            while len(self._data) > self.maxsize:
                del self._data[next(iter(self._data))]

    def pop(self, key: K) -> None:
        with self._lock:
            self._data.pop(key, None)


class ExpiringCache(Generic[K, V]):
    """A `BoundedCache` whose entries expire `ttl` seconds after they were set (by `clock`)."""

    def __init__(self, maxsize: int, ttl: float, clock: Callable[[], float]) -> None:
        self._entries: BoundedCache[K, tuple[float, V]] = BoundedCache(maxsize)
        self._ttl, self._clock = ttl, clock

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def set(self, key: K, value: V) -> None:
        self._entries.set(key, (self._clock() + self._ttl, value))


class RecentKeys(Generic[H]):
    """The keys added in the last `ttl` seconds (by `clock`), at most `maxsize` of them (the
    oldest are forgotten first): a replay check in O(1), expired keys dropped as new ones come."""

    def __init__(self, maxsize: int, ttl: float, clock: Callable[[], float]) -> None:
        self.maxsize, self._ttl, self._clock = maxsize, ttl, clock
        self._keys: set[H] = set()
        self._order: deque[tuple[float, H]] = deque()  # (expiry, key), oldest first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: H) -> bool:
        """Remember `key`; False when it is already remembered (a replay)."""
        now = self._clock()
        with self._lock:
            keys, order = self._keys, self._order
            while order and order[0][0] <= now:
                keys.discard(order.popleft()[1])
            if key in keys:
                return False
            keys.add(key)
            order.append((now + self._ttl, key))
            if len(order) > self.maxsize:
                keys.discard(order.popleft()[1])
            return True
