"""`MemoryStore`: bounded, least-recently-used, with TTLs; for one-process apps and tests."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from ..flow import Flow, returns

__all__ = ["MemoryStore"]


class MemoryStore:
    """Sessions in this process's memory, at most `max_sessions` of them (least recently used
    are evicted first). Safe under threads and asyncio: every operation is short and
    non-blocking. Sessions do not survive a restart and are not shared between processes."""

    def __init__(self, max_sessions: int = 10_000, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.max_sessions = max_sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[bytes, float, tuple[str, ...]]] = OrderedDict()
        self._tags: dict[str, set[str]] = {}
        self._locks: dict[str, tuple[str, float]] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def get(self, key: str) -> Flow[bytes | None]:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return returns(None)
            if item[1] <= self._clock():
                self._forget(key)
                return returns(None)
            self._items.move_to_end(key)
            return returns(item[0])

    def set(self, key: str, value: bytes, ttl: int, tags: Sequence[str] = ()) -> Flow[None]:
        with self._lock:
            if key in self._items:
                self._forget(key)
            self._items[key] = (value, self._clock() + ttl, tuple(tags))
            for tag in tags:
                self._tags.setdefault(tag, set()).add(key)
            while len(self._items) > self.max_sessions:
                self._forget(next(iter(self._items)))
        return returns(None)

    def delete(self, key: str) -> Flow[None]:
        with self._lock:
            self._forget(key)
        return returns(None)

    def delete_tagged(self, tag: str) -> Flow[int]:
        with self._lock:
            keys = list(self._tags.get(tag, ()))
            for key in keys:
                self._forget(key)
        return returns(len(keys))

    def members(self, tag: str) -> Flow[list[tuple[str, bytes]]]:
        with self._lock:
            now = self._clock()
            found = []
            for key in list(self._tags.get(tag, ())):
                item = self._items[key]
                if item[1] <= now:
                    self._forget(key)
                else:
                    found.append((key, item[0]))
        return returns(found)

    def acquire_lock(self, name: str, owner: str, ttl: float) -> Flow[bool]:
        with self._lock:
            now = self._clock()
            held = self._locks.get(name)
            if held is not None and held[1] > now:
                return returns(False)
            self._locks[name] = (owner, now + ttl)
            if len(self._locks) > 2 * self.max_sessions:
                self._locks = {k: v for k, v in self._locks.items() if v[1] > now}
            return returns(True)

    def release_lock(self, name: str, owner: str) -> Flow[None]:
        with self._lock:
            held = self._locks.get(name)
            if held is not None and held[0] == owner:
                del self._locks[name]
        return returns(None)

    def _forget(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is None:
            return
        for tag in item[2]:
            keys = self._tags.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._tags[tag]
