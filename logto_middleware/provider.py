"""The provider's discovery document and JWKS: fetched on first need, cached, single-flight."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet, import_key

from .cache import ExpiringCache
from .errors import ProviderError, ProviderUnavailable
from .flow import Flow, Shared

__all__ = ["ProviderCache", "ProviderMetadata", "read_json"]

log = logging.getLogger("logto_middleware")

_MAX_DOCUMENT = 512 * 1024


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of the discovery document the middleware uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None = None
    end_session_endpoint: str | None = None
    revocation_endpoint: str | None = None
    iss_parameter_supported: bool = False

    @classmethod
    def parse(cls, document: dict[str, Any], expected_issuer: str) -> ProviderMetadata:
        if document.get("issuer") != expected_issuer:
            # A discovery document for another issuer is a mix-up attack or a misconfiguration.
            raise ProviderError("discovery document names another issuer than AUTH_LOGTO_ISSUER")
        urls: dict[str, str | None] = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint",
                     "end_session_endpoint", "revocation_endpoint"):
            value = document.get(name)
            required = name in ("authorization_endpoint", "token_endpoint", "jwks_uri")
            if value is None and not required:
                urls[name] = None
                continue
            if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                raise ProviderError(f"discovery document has no valid {name}")
            urls[name] = value
        return cls(
            issuer=expected_issuer,
            authorization_endpoint=str(urls["authorization_endpoint"]),
            token_endpoint=str(urls["token_endpoint"]),
            jwks_uri=str(urls["jwks_uri"]),
            userinfo_endpoint=urls["userinfo_endpoint"],
            end_session_endpoint=urls["end_session_endpoint"],
            revocation_endpoint=urls["revocation_endpoint"],
            iss_parameter_supported=document.get("authorization_response_iss_parameter_supported") is True,
        )


def read_json(response: httpx.Response, what: str) -> Any:
    """The JSON body of a provider response; 5xx is an outage, anything unparsable is broken."""
    if response.status_code >= 500:
        raise ProviderUnavailable(f"{what} answered {response.status_code}")
    if len(response.content) > _MAX_DOCUMENT:
        raise ProviderError(f"{what} answered an oversized body")
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProviderError(f"{what} answered non-JSON (status {response.status_code})") from exc


class ProviderCache:
    """Discovery and JWKS for one issuer, cached with a TTL.

    Concurrent cold requests share one fetch; an unknown `kid` triggers at most one JWKS refetch
    per `refetch_interval`; a failed fetch keeps serving the last good copy.
    """

    def __init__(self, issuer: str, *, ttl: float = 3600.0, refetch_interval: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.issuer = issuer
        self._clock = clock
        self._refetch_interval = refetch_interval
        self._lock = threading.Lock()
        self._fresh: ExpiringCache[str, Any] = ExpiringCache(4, ttl, clock)
        self._last_good: dict[str, Any] = {}
        self._jwks_fetched_at = float("-inf")

    def _cached(self, name: str) -> Any:
        return self._fresh.get(name)

    def _store(self, name: str, value: Any) -> None:
        with self._lock:
            self._fresh.set(name, value)
            self._last_good[name] = value

    def metadata(self) -> Flow[ProviderMetadata]:
        cached = self._cached("metadata")
        if isinstance(cached, ProviderMetadata):
            return cached
        result: ProviderMetadata = yield from self._with_fallback(
            "metadata", Shared(("logto", "discovery"), self._fetch_metadata))
        return result

    def keys(self) -> Flow[KeySet]:
        cached = self._cached("jwks")
        if isinstance(cached, KeySet):
            return cached
        result: KeySet = yield from self._with_fallback("jwks", Shared(("logto", "jwks"), self._fetch_jwks))
        return result

    def refetch_keys(self) -> Flow[KeySet | None]:
        """Fetch the JWKS again after an unknown `kid`, unless that was done very recently."""
        with self._lock:
            if self._clock() - self._jwks_fetched_at < self._refetch_interval:
                return None
        try:
            keys: KeySet = yield Shared(("logto", "jwks"), self._fetch_jwks)
        except (ProviderError, ProviderUnavailable) as exc:
            log.warning("JWKS refetch failed, keeping the cached keys: %s", exc)
            return None
        return keys

    def _with_fallback(self, name: str, effect: Shared) -> Flow[Any]:
        try:
            return (yield effect)
        except (ProviderError, ProviderUnavailable) as exc:
            with self._lock:
                stale = self._last_good.get(name)
            if stale is None:
                raise
            log.warning("refreshing the provider's %s failed, serving the cached copy: %s", name, exc)
            return stale

    def _fetch_metadata(self) -> Flow[ProviderMetadata]:
        response = yield httpx.Request("GET", self.issuer + "/.well-known/openid-configuration")
        document = read_json(response, "discovery")
        if response.status_code != 200 or not isinstance(document, dict):
            raise ProviderError(f"discovery answered {response.status_code}")
        metadata = ProviderMetadata.parse(document, self.issuer)
        self._store("metadata", metadata)
        return metadata

    def _fetch_jwks(self) -> Flow[KeySet]:
        metadata: ProviderMetadata = yield from self.metadata()
        with self._lock:
            self._jwks_fetched_at = self._clock()
        response = yield httpx.Request("GET", metadata.jwks_uri)
        document = read_json(response, "jwks")
        if response.status_code != 200 or not isinstance(document, dict):
            raise ProviderError(f"jwks answered {response.status_code}")
        keys = _parse_key_set(document)
        self._store("jwks", keys)
        return keys


def _parse_key_set(document: dict[str, Any]) -> KeySet:
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
    return KeySet(keys)
