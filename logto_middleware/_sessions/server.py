"""Server-side sessions on any `SessionStore`: the cookie holds only an encrypted session id."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence

from ..errors import ProviderUnavailable
from ..flow import Flow, Sleep
from ..session import SessionData
from ..stores.base import SessionStore
from .cipher import Cipher

__all__ = ["ServerSessions"]

_ID_AAD = b"logto.session-id"
# As in cookie.py: an id encrypted for a `__Host-` cookie is bound to that name, so it cannot be
# replayed under an earlier version's `__Secure-` name (still read while sessions migrate).
_HOST_ID_AAD = _ID_AAD + b"/__Host-"


class ServerSessions:
    """Keeps `SessionData` in a store, encrypted with the app's secret (a read of the database
    hands out no token), keyed by a random session id that the cookie carries encrypted."""

    server_side = True

    def __init__(self, store: SessionStore, secrets_: Sequence[str], *, clock: Callable[[], float] = time.time,
                 lock_ttl: float = 10.0, lock_wait: float = 8.0, poll: float = 0.05) -> None:
        self.store = store
        self._ids = Cipher(secrets_, "session id")
        self._data = Cipher(secrets_, "session data")
        self._clock = clock
        self._lock_ttl, self._lock_wait, self._poll = lock_ttl, lock_wait, poll

    def session_id(self, cookie_value: str | None, cookie_name: str | None = None) -> str | None:
        """The session id in a cookie value: bound to `cookie_name` when given (a value read
        from a request), else of either binding (a value accepted before: a refresh, a delete)."""
        if not cookie_value:
            return None
        aads = (_id_aad(cookie_name),) if cookie_name is not None else (_HOST_ID_AAD, _ID_AAD)
        for aad in aads:
            plaintext = self._ids.decrypt(cookie_value, aad)
            if plaintext:
                return plaintext.decode("ascii", "replace")
        return None

    def cached(self, cookie_value: str, cookie_name: str = "") -> SessionData | None:
        """Never: a stored session is read on every request (a sign-out elsewhere ends it at once)."""
        return None

    def load(self, cookie_value: str, cookie_name: str = "") -> Flow[SessionData | None]:
        sid = self.session_id(cookie_value, cookie_name or None)  # no name: a value accepted before
        if sid is None:
            return None
        key = "session:" + sid
        raw = yield from self.store.get(key)
        if raw is None:
            return None
        plaintext = self._data.decrypt(raw.decode("ascii", "replace"), key.encode())
        return SessionData.from_json(plaintext) if plaintext is not None else None

    def save(self, data: SessionData, cookie_value: str | None, cookie_name: str = "") -> Flow[str]:
        """Store `data`; the cookie value is unchanged for an existing session id (re-encrypted
        when it moves to a cookie name of another binding)."""
        sid = self.session_id(cookie_value)
        if sid is None:
            sid, cookie_value = secrets.token_urlsafe(32), None
        elif cookie_name and self.session_id(cookie_value, cookie_name) is None:
            cookie_value = None  # a migrating session: its id, encrypted for the new name
        key = "session:" + sid
        blob = self._data.encrypt(data.to_json(), key.encode()).encode("ascii")
        tags = ["sub:" + str(data.claims.get("sub"))]
        if isinstance(data.claims.get("sid"), str):
            tags.append("sid:" + data.claims["sid"])
        ttl = max(1, data.expires_at - int(self._clock()))
        yield from self.store.set(key, blob, ttl, tags)
        if cookie_value is None:
            cookie_value = self._ids.encrypt(sid.encode("ascii"), _id_aad(cookie_name))
        return cookie_value

    def delete(self, cookie_value: str) -> Flow[None]:
        sid = self.session_id(cookie_value)
        if sid is not None:
            yield from self.store.delete("session:" + sid)

    def delete_user(self, sub: str) -> Flow[int]:
        return (yield from self.store.delete_tagged("sub:" + sub))

    def delete_logto_session(self, sid: str) -> Flow[int]:
        return (yield from self.store.delete_tagged("sid:" + sid))

    def seen_before(self, name: str, ttl: float) -> Flow[bool]:
        """True if `name` was marked within `ttl` (e.g. a logout token's jti); marks it."""
        taken = yield from self.store.acquire_lock("seen:" + name, "1", ttl)
        return not taken

    def refresh_once(self, cookie_value: str, data: SessionData, grant: Callable[[SessionData], Flow[SessionData]],
                     settled: Callable[[SessionData], bool]) -> Flow[SessionData | None]:
        """Refresh across processes: whoever takes the store's lock runs `grant` and stores the
        result; the others poll the store until `settled` says another process did the work. A
        dead holder's lock expires. Returns None when the session vanished (signed out elsewhere)."""
        sid = self.session_id(cookie_value)
        if sid is None:
            return None
        lock, owner = "refresh:" + sid, secrets.token_hex(8)
        deadline = self._clock() + self._lock_wait
        while True:
            if (yield from self.store.acquire_lock(lock, owner, self._lock_ttl)):
                try:
                    current = yield from self.load(cookie_value)
                    if current is None or settled(current):
                        return current  # refreshed (or ended) just before we got the lock
                    refreshed = yield from grant(current)
                    yield from self.save(refreshed, cookie_value)
                except BaseException:
                    yield from self.store.release_lock(lock, owner)
                    raise
                yield from self.store.release_lock(lock, owner)
                return refreshed
            yield Sleep(self._poll)
            current = yield from self.load(cookie_value)
            if current is None or settled(current):
                return current
            if self._clock() > deadline:
                raise ProviderUnavailable("another instance is still refreshing this session")


def _id_aad(cookie_name: str) -> bytes:
    return _HOST_ID_AAD if cookie_name.startswith("__Host-") else _ID_AAD
