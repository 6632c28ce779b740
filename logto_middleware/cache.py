"""A bounded mapping for the per-request caches: reads are one `dict.get` (no lock, no
recency bookkeeping); inserts past the bound evict the oldest entry."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["BoundedCache", "ExpiringCache"]

K = TypeVar("K")
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
