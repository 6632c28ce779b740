"""Where sessions live.

- `CookieStore` (the default): the whole session, encrypted, in the cookie. One process or
  many, nothing to run; sessions cannot be ended from the server.
- `MemoryStore`: server-side, in this process; for one-process apps and tests.
- `RedisStore`: server-side, shared by every worker and machine; sign-out everywhere and
  back-channel logout.
- `SessionStore`: the protocol a custom store (SQL, Memcached, ...) implements.
"""

from __future__ import annotations

from .._sessions.cookie import CookieStore
from .._sessions.server import ServerSessions
from .base import SessionStore
from .memory import MemoryStore
from .redis import RedisStore

__all__ = ["CookieStore", "MemoryStore", "RedisStore", "ServerSessions", "SessionStore", "store_from_setting"]


def store_from_setting(setting: str) -> SessionStore | None:
    """The store that `AUTH_SESSION_STORE` names: None for `cookie`."""
    if setting == "cookie":
        return None
    if setting == "memory":
        return MemoryStore()
    return RedisStore.from_url(setting)
