"""The default store: the whole session, encrypted and authenticated, in the cookie itself."""

from __future__ import annotations

from collections.abc import Sequence

from ..cache import BoundedCache
from ..crypto import Cipher
from ..flow import Flow, returns
from ..session import SessionData

__all__ = ["CookieStore"]

_AAD = b"logto.session-token"
_TAG_CHARS = 22  # base64url characters of the 16-byte GCM tag, which ends every sealed value


class CookieStore:
    """Seals `SessionData` into the cookie value with AES-256-GCM.

    A small LRU cache maps an exact, already-authenticated cookie value to its session, so
    an unchanged cookie is decrypted once, not on every request (expiry is still checked by
    the caller on every request).
    """

    server_side = False

    def __init__(self, secrets: Sequence[str], *, cache_size: int = 1024) -> None:
        self._cipher = Cipher(secrets, "session cookie")
        # Keyed by the value's last characters (inside the GCM tag: unique per sealed value), so
        # a lookup hashes 22 characters, not the whole 1-2 KB value; the full value is compared.
        self._cache: BoundedCache[str, tuple[str, SessionData]] = BoundedCache(cache_size)
        self._sealed: BoundedCache[int, tuple[SessionData, str]] = BoundedCache(cache_size)

    def cached(self, cookie_value: str, cookie_name: str = "") -> SessionData | None:
        """The session of a cookie value seen (and authenticated) before, without decrypting."""
        hit = self.cached_entry(cookie_value, cookie_name)
        return hit[1] if hit is not None else None

    def cached_entry(self, cookie_value: str, cookie_name: str = "") -> tuple[str, SessionData] | None:
        """`cached()`, with the store's own copy of the (equal) cookie value."""
        hit = self._cache.get(cookie_value[-_TAG_CHARS:])
        return hit if hit is not None and hit[0] == cookie_value else None

    def load(self, cookie_value: str, cookie_name: str = "") -> Flow[SessionData | None]:
        cached = self.cached(cookie_value)
        if cached is not None:
            return returns(cached)
        plaintext = self._cipher.decrypt(cookie_value, _AAD)
        data = SessionData.from_json(plaintext) if plaintext is not None else None
        if data is not None:
            self._remember(cookie_value, data)
        return returns(data)

    def _remember(self, cookie_value: str, data: SessionData) -> None:
        self._cache.set(cookie_value[-_TAG_CHARS:], (cookie_value, data))

    def save(self, data: SessionData, cookie_value: str | None, cookie_name: str = "") -> Flow[str]:
        return returns(self.seal(data))

    def seal(self, data: SessionData) -> str:
        """The cookie value of `data` (no I/O: the core calls this directly)."""
        sealed = self._sealed.get(id(data))
        if sealed is not None and sealed[0] is data:
            # The same refreshed session, written for each concurrent request: seal it once.
            return sealed[1]
        value = self._cipher.encrypt(data.to_json(), _AAD)
        self._remember(value, data)
        self._sealed.set(id(data), (data, value))
        return value

    def delete(self, cookie_value: str) -> Flow[None]:
        if self.cached(cookie_value) is not None:
            self._cache.pop(cookie_value[-_TAG_CHARS:])
        return returns(None)
