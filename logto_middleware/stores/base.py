"""The interface of a server-side session store.

A store is seven operations. Each is a *flow* (see `logto_middleware.flow`): a generator that
returns the result, and that yields a `Call` effect for its I/O so that one implementation
serves both the sync (WSGI) and the async (ASGI) middleware. A store that lives in memory
simply returns (`flow.returns`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..flow import Flow

__all__ = ["SessionStore"]


@runtime_checkable
class SessionStore(Protocol):
    """What `store=` accepts besides the default cookie store.

    Keys and tags are plain strings chosen by the middleware; values are opaque encrypted
    bytes. Raise `logto_middleware.StoreUnavailable` when the backend cannot be reached.
    """

    def get(self, key: str) -> Flow[bytes | None]:
        """The value stored under `key`, or None when absent or expired."""
        ...

    def set(self, key: str, value: bytes, ttl: int, tags: Sequence[str] = ()) -> Flow[None]:
        """Store `value` for `ttl` seconds and file `key` under each tag (e.g. `sub:<id>`)."""
        ...

    def delete(self, key: str) -> Flow[None]:
        """Forget `key`."""
        ...

    def delete_tagged(self, tag: str) -> Flow[int]:
        """Delete every key filed under `tag`; the number deleted."""
        ...

    def members(self, tag: str) -> Flow[list[tuple[str, bytes]]]:
        """The live keys filed under `tag`, each with its value (e.g. a user's sessions)."""
        ...

    def acquire_lock(self, name: str, owner: str, ttl: float) -> Flow[bool]:
        """Take the lock `name` for `ttl` seconds unless someone holds it; True when taken."""
        ...

    def release_lock(self, name: str, owner: str) -> Flow[None]:
        """Release `name` if `owner` still holds it."""
        ...
