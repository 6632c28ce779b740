"""A provider's published signing keys (one JWKS document), imported once and indexed by `kid`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ProviderError

# joserfc (with the parts of `cryptography` it loads) is imported when a JWKS is first parsed,
# not at import: an app whose requests are served from their session cookies never needs it.
if TYPE_CHECKING:
    from joserfc.jwk import Key

__all__ = ["ProviderKeys"]

_KTY_OF_ALG = {"ES": "EC", "RS": "RSA", "PS": "RSA", "Ed": "OKP"}


class ProviderKeys:
    """The usable signing keys of one fetched JWKS. Immutable: a refetch makes a new one, so a
    key that left the JWKS is gone from the provider's keys as soon as the refetch is stored."""

    __slots__ = ("_by_kid", "key_set")

    def __init__(self, keys: list[Key]) -> None:
        from joserfc.jwk import KeySet

        self.key_set = KeySet(keys)
        by_kid: dict[str | None, list[Key]] = {}
        for key in keys:
            by_kid.setdefault(key.kid, []).append(key)
        self._by_kid: Mapping[str | None, tuple[Key, ...]] = {kid: tuple(found) for kid, found in by_kid.items()}

    @classmethod
    def parse(cls, document: dict[str, Any]) -> ProviderKeys:
        """The signing keys of a JWKS document; `ProviderError` when it has none usable."""
        from joserfc.errors import JoseError
        from joserfc.jwk import import_key

        entries = document.get("keys")
        if not isinstance(entries, list):
            raise ProviderError("jwks has no keys")
        keys: list[Key] = []
        for entry in entries:
            # Keys for encryption, symmetric keys and unknown types are skipped, not trusted.
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            if entry.get("kty") not in ("EC", "RSA", "OKP"):
                continue
            try:
                keys.append(import_key(entry))
            except (JoseError, ValueError, TypeError, KeyError):
                continue
        if not keys:
            raise ProviderError("jwks has no usable signing key")
        return cls(keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._by_kid

    def has_new_kids(self, than: ProviderKeys) -> bool:
        """Whether this JWKS publishes a `kid` that `than` did not (the provider rotated)."""
        return not self._by_kid.keys() <= than._by_kid.keys()

    def pick(self, kid: str | None, alg: str) -> Key | None:
        """The key for a token signed with `alg` under `kid`; without a kid only an unambiguous one."""
        kty = _KTY_OF_ALG.get(alg[:2])
        found = self._by_kid.get(kid, ()) if kid is not None else tuple(self.key_set.keys)
        candidates = [key for key in found if key.key_type == kty and key.get("alg", alg) == alg]
        if kid is None and len(candidates) != 1:
            return None
        return candidates[0] if candidates else None
