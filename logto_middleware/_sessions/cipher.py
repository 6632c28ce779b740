"""Authenticated encryption for cookies: AES-256-GCM with keys derived once per secret (HKDF-SHA256)."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

# `cryptography` is imported by the first key derived (`derive_key`) and the first AEAD made
# (`_aes_gcm`): when the middleware is built, its ciphers and signers with it, not when the
# package is imported (an app may import it and build the middleware later, or never).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["Cipher", "Signer", "b64decode", "b64encode", "derive_key"]

_KEY_ID_SIZE = 4
_NONCE_SIZE = 12
_TAG_SIZE = 16


# `base64.urlsafe_b64encode`/`urlsafe_b64decode` in one C call each instead of three Python frames.
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def b64encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """Decode unpadded base64url; raises ValueError on anything else."""
    try:
        return binascii.a2b_base64((text + "=" * (-len(text) % 4)).encode("ascii").translate(_FROM_URLSAFE))
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not base64url") from exc


def derive_key(secret: str, info: str, length: int = 32, *, salt: bytes = b"logto-middleware") -> bytes:
    """HKDF-SHA256 of `secret`: `length` bytes for the purpose `info`."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info.encode()).derive(secret.encode())


def _aes_gcm(key: bytes) -> AESGCM:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


class Cipher:
    """Encrypts with the first secret's key and decrypts with any of them.

    Output is base64url(key id | nonce | ciphertext | tag); the key id picks the key on decrypt,
    so rotating secrets costs one AES-GCM operation, not one per listed secret.
    """

    def __init__(self, secrets: Sequence[str], purpose: str) -> None:
        keys = [derive_key(secret, f"logto-middleware {purpose}") for secret in secrets]
        self._keys = {hashlib.sha256(key).digest()[:_KEY_ID_SIZE]: _aes_gcm(key) for key in keys}
        self._current_id = hashlib.sha256(keys[0]).digest()[:_KEY_ID_SIZE]
        self._current = self._keys[self._current_id]

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> str:
        nonce = os.urandom(_NONCE_SIZE)
        sealed = self._current.encrypt(nonce, plaintext, associated_data)
        return b64encode(self._current_id + nonce + sealed)

    def decrypt(self, token: str, associated_data: bytes) -> bytes | None:
        """The plaintext, or None for anything forged, truncated, or sealed with an unknown key."""
        try:
            raw = b64decode(token)
        except ValueError:
            return None
        if len(raw) < _KEY_ID_SIZE + _NONCE_SIZE + _TAG_SIZE:
            return None
        aead = self._keys.get(raw[:_KEY_ID_SIZE])
        if aead is None:
            return None
        from cryptography.exceptions import InvalidTag  # loaded with the AEAD: a lookup

        nonce = raw[_KEY_ID_SIZE:_KEY_ID_SIZE + _NONCE_SIZE]
        try:
            return aead.decrypt(nonce, raw[_KEY_ID_SIZE + _NONCE_SIZE:], associated_data)
        except InvalidTag:
            return None


class Signer:
    """HMAC-SHA256 tags with the first secret; tags of any listed secret verify."""

    def __init__(self, secrets: Sequence[str], purpose: str) -> None:
        self._keys = [derive_key(secret, f"logto-middleware {purpose}") for secret in secrets]

    def sign(self, message: str) -> str:
        return hmac.new(self._keys[0], message.encode(), hashlib.sha256).hexdigest()

    def verify(self, message: str, tag: str) -> bool:
        ok = False
        for key in self._keys:
            expected = hmac.new(key, message.encode(), hashlib.sha256).hexdigest()
            # Bytes: compare_digest refuses str with non-ASCII characters (a forged cookie's).
            ok |= hmac.compare_digest(expected.encode(), tag.encode())
        return ok
