"""Server-side sessions on any `SessionStore`: the cookie holds only an encrypted session id."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Sequence

from cachetools import LRUCache

from ..errors import ProviderUnavailable
from ..flow import Flow, Sleep, returns
from ..session import SessionData
from ..stores.base import SessionStore
from .cipher import Cipher
from .cookies import accepted_bindings
from .devices import DeviceSession, SessionHandles, device_of, seen

__all__ = ["ServerSessions"]

_EARLIER_ID_AAD = b"logto.session-id"
# As in cookie.py: ids encrypted now are told apart from those of the versions before the
# `__Host-` names, so none can be planted under their `__Secure-` name (cookies.accepted_bindings).
_ID_AAD = _EARLIER_ID_AAD + b"/2"
_EITHER = (_ID_AAD, _EARLIER_ID_AAD)
_TAG_CHARS = 22  # base64url characters of the GCM tag that ends a sealed value: unique per value


def user_slot(sub: str) -> str:
    """The hash tag of user `sub`'s keys: `{` + 8 hex digits of SHA-256(sub) + `}`.

    A session id starts with it and the user's index names carry it (`sub:{U}<sub>`,
    `sid:{U}<sid>`), so that one user's session and indexes share a Redis Cluster slot and one
    script can update them all. Not keyed by the app's secret: it must not change when the
    secret rotates (sign-out everywhere would have to look under every secret's tag), it hides
    nothing the index names do not already hold, and 32 bits of a hash name no user (many subs
    share one tag; the slot is all that is made of it)."""
    return "{" + hashlib.sha256(sub.encode()).hexdigest()[:8] + "}"


class ServerSessions:
    """Keeps `SessionData` in a store, encrypted with the app's secret (a read of the database
    hands out no token), keyed by a random session id that the cookie carries encrypted."""

    server_side = True

    def __init__(self, store: SessionStore, secrets_: Sequence[str], *, clock: Callable[[], float] = time.time,
                 lock_ttl: float = 10.0, lock_wait: float = 8.0, poll: float = 0.05, cache_size: int = 1024) -> None:
        self.store = store
        self._ids = Cipher(secrets_, "session id")
        self._data = Cipher(secrets_, "session data")
        self._handles = SessionHandles(secrets_)
        # The store is read on every request; what it answers need not be decrypted every time.
        # Opened ids: cookie value -> (its bindings tried, the id and binding found); decoded
        # sessions: store key -> (the exact stored ciphertext, its session). Both hold only what
        # was authenticated (AES-GCM) under this instance's secrets, and a session is used only
        # when the store still returns that very ciphertext: a sign-out elsewhere still ends it.
        self._opened: LRUCache[str, tuple[str, tuple[bytes, ...], tuple[str, bytes]]] = LRUCache(cache_size)
        self._decoded: LRUCache[str, tuple[bytes, SessionData]] = LRUCache(cache_size)
        self._cache_lock = threading.Lock()  # cachetools' caches are not thread-safe
        self._clock = clock
        self._lock_ttl, self._lock_wait, self._poll = lock_ttl, lock_wait, poll

    def session_id(self, cookie_value: str | None, cookie_name: str | None = None) -> str | None:
        """The session id in a cookie value: of a binding that cookie `cookie_name` accepts when
        given (a value read from a request), else of either (a value accepted before)."""
        aads = _EITHER if cookie_name is None else accepted_bindings(cookie_name, _ID_AAD, _EARLIER_ID_AAD)
        opened = self._open(cookie_value, aads)
        return opened[0] if opened is not None else None

    def _open(self, cookie_value: str | None, aads: Sequence[bytes]) -> tuple[str, bytes] | None:
        """(the session id, the binding it was encrypted with), or None."""
        if not cookie_value:
            return None
        aads = tuple(aads)
        with self._cache_lock:
            hit = self._opened.get(cookie_value[-_TAG_CHARS:])
        if hit is not None and hit[0] == cookie_value and hit[1] == aads:
            return hit[2]
        for aad in aads:
            plaintext = self._ids.decrypt(cookie_value, aad)
            if plaintext:
                opened = plaintext.decode("ascii", "replace"), aad
                with self._cache_lock:
                    self._opened[cookie_value[-_TAG_CHARS:]] = (cookie_value, aads, opened)
                return opened
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
        with self._cache_lock:
            hit = self._decoded.get(key)
        if hit is not None and hit[0] == raw:
            return hit[1]
        plaintext = self._data.decrypt(raw.decode("ascii", "replace"), key.encode())
        data = SessionData.from_json(plaintext) if plaintext is not None else None
        if data is not None:
            with self._cache_lock:
                self._decoded[key] = (raw, data)
        return data

    def save(self, data: SessionData, cookie_value: str | None, cookie_name: str = "") -> Flow[str]:
        """Store `data`; the cookie value is unchanged for an existing session id, except for a
        session of an earlier version written back to its cookie (`cookie_name`)."""
        opened = self._open(cookie_value, _EITHER)
        earlier = None
        slot = user_slot(str(data.claims.get("sub")))
        if opened is None:
            sid, cookie_value = slot + secrets.token_urlsafe(32), None
        else:
            sid, aad = opened
            if cookie_name and aad != _ID_AAD:
                # It moves to a new id: the old one is never extended again, so the old value
                # (which a sibling host could plant under the earlier `__Secure-` name) runs out
                # within session_max_age. Moved from that name, the old id ends now; under the
                # same (http) name it is left to run out, as a request still carrying the old
                # value would otherwise clear the new cookie.
                earlier = sid if cookie_name.startswith("__Host-") else None
                sid, cookie_value = slot + secrets.token_urlsafe(32), None
        key = "session:" + sid
        data = seen(data, int(self._clock()))  # written now: the device's "last seen"
        blob = self._data.encrypt(data.to_json(), key.encode()).encode("ascii")
        # A session id from before the per-user hash tag keeps its id (its cookie stays valid)
        # and is filed under the new indexes: on one server or Sentinel, where such sessions
        # exist, a script may touch any key.
        tags = ["sub:" + slot + str(data.claims.get("sub"))]
        logto_sid = data.claims.get("sid")
        ttl = max(1, data.expires_at - int(self._clock()))
        if isinstance(logto_sid, str):
            tags.append("sid:" + slot + logto_sid)
            # For a logout token that names the Logto session alone (no `sub`): which user's
            # slot its sessions are in.
            yield from self.store.set("sid-user:" + logto_sid, slot.encode("ascii"), ttl)
        yield from self.store.set(key, blob, ttl, tags)
        if earlier is not None:
            yield from self.store.delete("session:" + earlier)
        if cookie_value is None:
            cookie_value = self._ids.encrypt(sid.encode("ascii"), _ID_AAD)
        return cookie_value

    def delete(self, cookie_value: str) -> Flow[None]:
        sid = self.session_id(cookie_value)
        if sid is not None:
            yield from self.store.delete("session:" + sid)

    def delete_user(self, sub: str) -> Flow[int]:
        """End every session of user `sub`; the number ended."""
        count = yield from self.store.delete_tagged("sub:" + user_slot(sub) + sub)
        # Sessions stored before the per-user hash tag and not written since.
        return count + (yield from self.store.delete_tagged("sub:" + sub))

    def delete_logto_session(self, sid: str, sub: str | None = None) -> Flow[int]:
        """End the sessions of Logto session `sid` (of user `sub`, when known); the number ended."""
        if sub is not None:
            slot: str | None = user_slot(sub)
        else:
            raw = yield from self.store.get("sid-user:" + sid)
            slot = raw.decode("ascii", "replace") if raw is not None else None
        count = 0
        if slot is not None:
            count = yield from self.store.delete_tagged("sid:" + slot + sid)
        return count + (yield from self.store.delete_tagged("sid:" + sid))

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

    # -- a user's devices ----------------------------------------------------------------------

    @property
    def lists_sessions(self) -> bool:
        """Whether the store can list a user's sessions (`SessionStore.members`; a custom store
        written for an earlier version may lack it)."""
        return callable(getattr(self.store, "members", None))

    def _sessions_of(self, sub: str) -> Flow[list[tuple[str, SessionData]]]:
        """(session id, data) of every live session of user `sub`. (A session stored before the
        per-user hash tag is listed once it is written again: at its next refresh or roll.)"""
        found = yield from self.store.members("sub:" + user_slot(sub) + sub)
        now = self._clock()
        sessions = []
        for key, raw in found:
            if not key.startswith("session:"):
                continue
            plaintext = self._data.decrypt(raw.decode("ascii", "replace"), key.encode())
            data = SessionData.from_json(plaintext) if plaintext is not None else None
            if data is not None and data.claims.get("sub") == sub and data.expires_at > now:
                sessions.append((key[len("session:"):], data))
        return sessions

    def list_sessions(self, sub: str, cookie_value: str | None = None) -> Flow[list[DeviceSession]]:
        """The sessions of user `sub`, the one of `cookie_value` marked current; the current one
        first, then the most recently seen."""
        current = self.session_id(cookie_value)
        sessions = yield from self._sessions_of(sub)
        devices = [device_of(data, self._handles.handle(sid), sid == current) for sid, data in sessions]
        devices.sort(key=lambda d: (not d.current, -(d.last_seen_at or 0)))
        return devices

    def is_handle_of(self, handle: str, cookie_value: str | None) -> bool:
        """Whether `handle` names the session of `cookie_value`."""
        sid = self.session_id(cookie_value)
        return sid is not None and self._handles.matches(sid, handle)

    def end_session(self, sub: str, handle: str) -> Flow[SessionData | None]:
        """End the session of user `sub` that `handle` names; its data (whose refresh token the
        caller revokes), or None when `sub` has no session of that handle."""
        for sid, data in (yield from self._sessions_of(sub)):
            if self._handles.matches(sid, handle):
                yield from self.store.delete("session:" + sid)
                return data
        return None

    def end_other_sessions(self, sub: str, cookie_value: str | None) -> Flow[list[SessionData]]:
        """End every session of user `sub` but the one of `cookie_value`; the data of those ended."""
        current = self.session_id(cookie_value)
        ended = []
        for sid, data in (yield from self._sessions_of(sub)):
            if sid != current:
                yield from self.store.delete("session:" + sid)
                ended.append(data)
        return ended

    def end_user_sessions(self, sub: str) -> Flow[list[SessionData]]:
        """End every session of user `sub` (sign-out everywhere); the data of those that could be
        read (a store without `members` ends them all the same)."""
        sessions = yield from (self._sessions_of(sub) if self.lists_sessions else returns([]))
        yield from self.delete_user(sub)
        return [data for _, data in sessions]
