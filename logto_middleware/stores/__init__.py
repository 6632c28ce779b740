"""Where sessions live.

- `CookieStore` (the default): the whole session, encrypted, in the cookie. One process or
  many, nothing to run; sessions cannot be ended from the server.
- `MemoryStore`: server-side, in this process; for one-process apps and tests.
- `RedisStore`: server-side, shared by every worker and machine; sign-out everywhere and
  back-channel logout.
- `SessionStore`: the protocol a custom store (SQL, Memcached, ...) implements.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._sessions.cookie import CookieStore
from .._sessions.server import ServerSessions
from .base import SessionStore
from .memory import MemoryStore

if TYPE_CHECKING:
    from .redis import RedisStore

__all__ = ["CookieStore", "MemoryStore", "RedisStore", "ServerSessions", "SessionStore", "store_from_setting"]


def store_from_setting(setting: str) -> SessionStore | None:
    """The store that `AUTH_SESSION_STORE` names: None for `cookie`."""
    if setting == "cookie":
        return None
    if setting == "memory":
        return MemoryStore()
    from .redis import RedisStore

    return RedisStore.from_url(setting)


def __getattr__(name: str) -> Any:
    # `redis` (and its ~100 ms import) only for apps that use Redis.
    if name == "RedisStore":
        from .redis import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
