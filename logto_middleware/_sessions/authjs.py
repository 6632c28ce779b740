"""Auth.js v5 session cookies, so a Python API and an Auth.js front end share one session.

The format, from `@auth/core` (`jwt.ts`, `lib/utils/cookie.ts`): the cookie
`authjs.session-token` (`__Secure-` on https) holds a JWE compact token, `alg` `dir`, `enc`
`A256CBC-HS512` (`A256GCM` accepted on read), keyed with HKDF-SHA256(secret, salt = the cookie
name, info = "Auth.js Generated Encryption Key (<salt>)"), `kid` the key's JWK thumbprint, and
the claims `iat`, `exp`, `jti`; decoding allows 15 s of clock skew. The CSRF cookie is
`token|sha256(token + secret)`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, TypeGuard

from cachetools import LRUCache

from ..flow import Flow, returns
from ..session import SessionData
from .cipher import b64encode, derive_key

# joserfc is imported where a token is read or written (and its keys made), not at import: only
# an app with session_format="authjs" needs it, and that one on its first Auth.js cookie (uuid,
# for the `jti`, likewise: it loads `platform`).
if TYPE_CHECKING:
    from joserfc.jwe import JWERegistry
    from joserfc.jwk import GuestProtocol, OctKey

__all__ = ["AUTHJS_CSRF_COOKIE", "AUTHJS_SESSION_COOKIE", "TOKEN_MEMBERS", "AuthJsCookieStore", "AuthJsCsrfSigner"]

AUTHJS_SESSION_COOKIE = "authjs.session-token"
AUTHJS_CSRF_COOKIE = "authjs.csrf-token"
CLOCK_TOLERANCE = 15
_ENCRYPT = "A256CBC-HS512"
_KEY_LENGTHS = {"A256CBC-HS512": 64, "A256GCM": 32}
_ALGORITHMS = ["dir", "A256CBC-HS512", "A256GCM"]
# The claims a session keeps in the token: the profile, and the sign-in's time (so a
# fresh-authentication guard can read it back; without it each guarded page would ask again).
_CLAIMS = ("sub", "name", "email", "picture", "auth_time")
# Token fields the session maps itself; everything else an Auth.js app put in its token is kept,
# as the session's fields (`SessionData.fields`, where `LogtoHooks.session_data` puts its own).
TOKEN_MEMBERS = frozenset({
    *_CLAIMS, "iat", "exp", "jti", "access_token", "expires_at", "refresh_token",
    "id_token", "scope", "error", "accessToken", "accessTokenExpires", "refreshToken", "expiresAt"})


@cache
def _registry() -> JWERegistry:
    from joserfc.jwe import JWERegistry

    return JWERegistry(algorithms=_ALGORITHMS)


def _derive(secret: str, salt: str, enc: str) -> bytes:
    return derive_key(secret, f"Auth.js Generated Encryption Key ({salt})", _KEY_LENGTHS[enc], salt=salt.encode())


def _thumbprint(key: bytes) -> str:
    # RFC 7638 over {"k","kty"}, with SHA-(key bits), as @auth/core calls calculateJwkThumbprint.
    member = json.dumps({"k": b64encode(key), "kty": "oct"}, separators=(",", ":"), sort_keys=True).encode()
    digest = {64: hashlib.sha512, 32: hashlib.sha256}[len(key)](member).digest()
    return b64encode(digest)


class _Keys:
    """Derived keys for one cookie name (the salt), once per secret and encryption."""

    def __init__(self, secrets: Sequence[str], salt: str) -> None:
        from joserfc.jwk import OctKey

        self.encrypt_key = _derive(secrets[0], salt, _ENCRYPT)
        self.encrypt_kid = _thumbprint(self.encrypt_key)
        self.by_kid: dict[str, OctKey] = {}
        self.first: dict[str, OctKey] = {}
        for enc in _KEY_LENGTHS:
            for index, secret in enumerate(secrets):
                key = _derive(secret, salt, enc)
                self.by_kid.setdefault(_thumbprint(key), OctKey.import_key(key))
                if index == 0:
                    self.first[enc] = OctKey.import_key(key)

    def pick(self, token: GuestProtocol) -> OctKey:
        """The key of a token joserfc has parsed (`headers()` raises for a header that is not
        an object), like @auth/core: the key whose thumbprint is the `kid`, else the first
        secret's for `enc`."""
        header = token.headers()
        kid, enc = header.get("kid"), header.get("enc")
        if kid is None:
            key = self.first.get(str(enc))
        elif isinstance(kid, str):
            key = self.by_kid.get(kid)
        else:
            key = None
        if key is None:
            from joserfc.errors import InvalidKeyIdError

            raise InvalidKeyIdError()
        return key


class AuthJsCookieStore:
    """Reads and writes the session as Auth.js's encrypted JWT cookie (session_format="authjs")."""

    server_side = False

    def __init__(self, secrets: Sequence[str], *, max_age: int = 30 * 24 * 3600, cache_size: int = 1024,
                 clock: Callable[[], float] = time.time) -> None:
        self._secrets = list(secrets)
        self._max_age = max_age
        self._clock = clock
        self._keys: dict[str, _Keys] = {}
        # The decoded-cookie cache: an exact token already decrypted (by name) -> its session.
        self._decoded: LRUCache[tuple[str, str], SessionData] = LRUCache(cache_size)
        self._lock = threading.Lock()  # for both caches: cachetools' are not thread-safe

    def _keys_for(self, salt: str) -> _Keys:
        with self._lock:
            keys = self._keys.get(salt)
        if keys is None:
            keys = _Keys(self._secrets, salt)
            with self._lock:
                self._keys[salt] = keys
        return keys

    def decode(self, token: str, salt: str) -> dict[str, Any] | None:
        """The payload of an Auth.js session token, or None for anything invalid or expired."""
        from joserfc.errors import JoseError
        from joserfc.jwe import decrypt_compact

        keys = self._keys_for(salt)
        try:
            # joserfc decides what a valid JWE is (shape, sizes, header, the registry's
            # algorithms: `dir` with A256CBC-HS512 or A256GCM); we only pick the key.
            plaintext = decrypt_compact(token, keys.pick, registry=_registry()).plaintext
            payload = json.loads(plaintext or b"")
        except (JoseError, ValueError, TypeError, RecursionError):
            # What joserfc raises on a token it finds malformed: its own errors, and ValueError or
            # TypeError for some JSON that is not a JOSE header (a list, a string); RecursionError
            # for a header of deeply nested arrays parsed on an already deep stack. Each means
            # "no session", never a 500.
            return None
        if not isinstance(payload, dict):
            return None
        now = self._clock()
        exp, nbf = payload.get("exp"), payload.get("nbf")
        # Like jose's jwtDecrypt: registered time claims must be numbers when present.
        if any(k in payload and not _is_number(payload[k]) for k in ("exp", "nbf", "iat")):
            return None
        if _is_number(exp) and exp + CLOCK_TOLERANCE <= now:
            return None
        if _is_number(nbf) and nbf - CLOCK_TOLERANCE > now:
            return None
        return payload

    def encode(self, payload: dict[str, Any], salt: str, max_age: int | None = None) -> str:
        """An Auth.js session token: `iat`, `exp` and `jti` set as `@auth/core`'s `encode` does."""
        import uuid

        from joserfc.jwe import encrypt_compact

        keys = self._keys_for(salt)
        now = int(self._clock())
        claims = {**payload, "iat": now, "exp": now + (self._max_age if max_age is None else max_age),
                  "jti": str(uuid.uuid4())}
        header = {"alg": "dir", "enc": _ENCRYPT, "kid": keys.encrypt_kid}
        return encrypt_compact(header, json.dumps(claims, separators=(",", ":")).encode(),
                               keys.first[_ENCRYPT], registry=_registry())

    def cached(self, cookie_value: str, cookie_name: str = AUTHJS_SESSION_COOKIE) -> SessionData | None:
        """The session of a token seen (and decrypted) before, without decrypting it again."""
        with self._lock:
            return self._decoded.get((cookie_name, cookie_value))

    def _remember(self, cookie_value: str, cookie_name: str, data: SessionData) -> None:
        with self._lock:
            self._decoded[(cookie_name, cookie_value)] = data

    def load(self, cookie_value: str, cookie_name: str = AUTHJS_SESSION_COOKIE) -> Flow[SessionData | None]:
        cached = self.cached(cookie_value, cookie_name)
        if cached is not None:
            return returns(cached)
        payload = self.decode(cookie_value, cookie_name)
        data = session_from_token(payload) if payload is not None else None
        if data is not None:
            self._remember(cookie_value, cookie_name, data)
        return returns(data)

    def save(self, data: SessionData, cookie_value: str | None,
             cookie_name: str = AUTHJS_SESSION_COOKIE) -> Flow[str]:
        value = self.encode(token_from_session(data), cookie_name, max(1, data.expires_at - int(self._clock())))
        self._remember(value, cookie_name, data)
        return returns(value)

    def delete(self, cookie_value: str) -> Flow[None]:
        return returns(None)


def session_from_token(token: dict[str, Any]) -> SessionData | None:
    """Map an Auth.js token (the refresh-token-rotation guide's fields, or the camelCase ones of
    older guides) to a session."""
    sub = token.get("sub")
    exp = token.get("exp")
    if not isinstance(sub, str) or not sub or not isinstance(exp, (int, float)):
        return None
    claims = {k: token[k] for k in _CLAIMS if token.get(k) is not None}
    access_token = _first_str(token, "access_token", "accessToken")
    refresh_token = _first_str(token, "refresh_token", "refreshToken")
    expires_at = token.get("expires_at", token.get("expiresAt"))
    if expires_at is None and isinstance(token.get("accessTokenExpires"), (int, float)):
        expires_at = token["accessTokenExpires"] / 1000  # the old guides stored milliseconds
    iat = token.get("iat")
    return SessionData(
        claims=claims, expires_at=int(exp), updated_at=int(iat) if isinstance(iat, (int, float)) else int(exp),
        id_token=_first_str(token, "id_token"), access_token=access_token,
        access_token_expires_at=int(expires_at) if isinstance(expires_at, (int, float)) else None,
        refresh_token=refresh_token, scope=_first_str(token, "scope") or "", error=_first_str(token, "error"),
        extra={"fields": {k: v for k, v in token.items() if k not in TOKEN_MEMBERS}})


def token_from_session(data: SessionData) -> dict[str, Any]:
    """The Auth.js token for a session: the profile fields, the tokens in the rotation guide's
    names, and whatever else the Auth.js app had put in its token."""
    token: dict[str, Any] = dict(data.fields)
    token.update({k: data.claims[k] for k in _CLAIMS if data.claims.get(k) is not None})
    if "name" not in token and isinstance(data.claims.get("username"), str):
        token["name"] = data.claims["username"]
    for field, value in (("access_token", data.access_token), ("expires_at", data.access_token_expires_at),
                         ("refresh_token", data.refresh_token), ("id_token", data.id_token),
                         ("scope", data.scope or None), ("error", data.error)):
        if value is not None:
            token[field] = value
    return token


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _first_str(token: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = token.get(name)
        if isinstance(value, str) and value:
            return value
    return None


class AuthJsCsrfSigner:
    """Auth.js's CSRF cookie hash: sha256 hex of the token followed by the secret (`@auth/core`
    hashes `${token}${secret}`; with several secrets their comma-joined list)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._secret = ",".join(secrets)

    def sign(self, token: str) -> str:
        return hashlib.sha256(f"{token}{self._secret}".encode()).hexdigest()

    def verify(self, token: str, tag: str) -> bool:
        return hmac.compare_digest(self.sign(token).encode(), tag.encode())  # bytes: a forged tag may be non-ASCII
