"""Signing keys and compact JWS helpers for `FakeLogto`."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, KeySetSerialization

ALG = "ES384"


def new_signing_key() -> ECKey:
    """A fresh P-384 key whose ``kid`` is its RFC 7638 thumbprint."""
    key: ECKey = ECKey.generate_key("P-384", {"alg": ALG, "use": "sig"}, auto_kid=True)
    return key


def public_jwks(keys: list[ECKey]) -> KeySetSerialization:
    """The public JWK Set for ``keys``."""
    return KeySet(list(keys)).as_dict(private=False)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(header: Mapping[str, Any], claims: Mapping[str, Any], key: Key | None) -> str:
    """A compact JWS of ``claims``; ``alg: none`` yields an unsigned token."""
    payload = json.dumps(dict(claims), separators=(",", ":")).encode()
    if header.get("alg") == "none":
        return f"{_b64(json.dumps(dict(header)).encode())}.{_b64(payload)}."
    if key is None:
        raise ValueError(f"a key is needed to sign with {header.get('alg')!r}")
    return jws.serialize_compact(dict(header), payload, key, algorithms=[str(header["alg"])])


def verify(token: str, keys: list[ECKey]) -> dict[str, Any] | None:
    """The claims of ``token`` if one of ``keys`` signed it (expiry is not checked)."""
    try:
        return dict(jwt.decode(token, KeySet(list(keys)), algorithms=[ALG]).claims)
    except (JoseError, ValueError):
        return None


def at_hash(access_token: str) -> str:
    """The OpenID ``at_hash`` of ``access_token`` for ES384 (left half of SHA-384)."""
    digest = hashlib.sha384(access_token.encode("ascii")).digest()
    return _b64(digest[: len(digest) // 2])
