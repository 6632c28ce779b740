"""The default store: the whole session, encrypted and authenticated, in the cookie itself."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from cachetools import LRUCache

from ..flow import Flow, returns
from ..session import SessionData
from .cipher import Cipher
from .cookies import accepted_bindings

__all__ = ["CookieStore"]

_EARLIER_AAD = b"logto.session-token"
# Values sealed now are told apart from those of the versions before the `__Host-` names, so
# none can be planted under their `__Secure-` name (see cookies.accepted_bindings).
_AAD = _EARLIER_AAD + b"/2"
_TAG_CHARS = 22  # base64url characters of the 16-byte GCM tag, which ends every sealed value


class CookieStore:
    """Seals `SessionData` into the cookie value with AES-256-GCM.

    The decoded-cookie cache maps an exact, already-authenticated cookie value to its session
    (least recently used evicted past `cache_size`), so an unchanged cookie is decrypted once,
    not on every request; expiry is still checked by the caller on every request.
    """

    server_side = False

    def __init__(self, secrets: Sequence[str], *, cache_size: int = 1024) -> None:
        self._cipher = Cipher(secrets, "session cookie")
        # Keyed by the value's last characters (inside the GCM tag: unique per sealed value), so
        # a lookup hashes 22 characters, not the whole 1-2 KB value; the full value and the
        # cookie name (which decides the binding, see _HOST_AAD) are compared.
        self._decoded: LRUCache[str, tuple[str, str, SessionData]] = LRUCache(cache_size)
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe

    def cached(self, cookie_value: str, cookie_name: str = "") -> SessionData | None:
        """The session of a cookie value seen (and authenticated) before, without decrypting."""
        try:
            with self._lock:
                hit = self._decoded[cookie_value[-_TAG_CHARS:]]
        except KeyError:
            return None
        return hit[2] if hit[0] == cookie_value and hit[1] == cookie_name else None

    def load(self, cookie_value: str, cookie_name: str = "") -> Flow[SessionData | None]:
        cached = self.cached(cookie_value, cookie_name)
        if cached is not None:
            return returns(cached)
        plaintext = None
        for aad in accepted_bindings(cookie_name, _AAD, _EARLIER_AAD):
            plaintext = self._cipher.decrypt(cookie_value, aad)
            if plaintext is not None:
                break
        data = SessionData.from_json(plaintext) if plaintext is not None else None
        if data is not None:
            self._remember(cookie_value, cookie_name, data)
        return returns(data)

    def _remember(self, cookie_value: str, cookie_name: str, data: SessionData) -> None:
        with self._lock:
            self._decoded[cookie_value[-_TAG_CHARS:]] = (cookie_value, cookie_name, data)

    def save(self, data: SessionData, cookie_value: str | None, cookie_name: str = "") -> Flow[str]:
        return returns(self.seal(data, cookie_name))

    def seal(self, data: SessionData, cookie_name: str = "") -> str:
        """The value of cookie `cookie_name` for `data`, remembered as decoded: the browser sends
        it back next."""
        value = self._cipher.encrypt(data.to_json(), _AAD)
        if _AAD in accepted_bindings(cookie_name, _AAD, _EARLIER_AAD):  # else never read back under that name
            self._remember(value, cookie_name, data)
        return value

    def delete(self, cookie_value: str) -> Flow[None]:
        with self._lock:
            hit = self._decoded.get(cookie_value[-_TAG_CHARS:])
            if hit is not None and hit[0] == cookie_value:
                del self._decoded[cookie_value[-_TAG_CHARS:]]
        return returns(None)
