"""The provider's discovery document and JWKS: fetched on first need, cached, single-flight."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ProviderError, ProviderUnavailable
from ..flow import Fetch, Flow, Shared
from .jwks import ProviderKeys

if TYPE_CHECKING:
    import httpx  # imported by `_get`, on the first fetch (see flow.py)

__all__ = ["ProviderCache", "ProviderMetadata", "read_json"]

log = logging.getLogger("logto_middleware")

# The discovery document and the JWKS are a few kilobytes; the driver stops reading past this.
_MAX_DOCUMENT = 512 * 1024
_WELL_KNOWN = "/.well-known/openid-configuration"


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
    id_token_signing_alg_values_supported: tuple[str, ...] = ()

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
            id_token_signing_alg_values_supported=tuple(
                alg for alg in document.get("id_token_signing_alg_values_supported") or () if isinstance(alg, str)),
        )


def _get(url: str) -> Fetch:
    """A GET of one of the provider's documents."""
    import httpx

    return Fetch(httpx.Request("GET", url), _MAX_DOCUMENT)


def read_json(response: httpx.Response, what: str) -> Any:
    """The JSON body of a provider response; 5xx is an outage, anything unparsable is broken.
    (Its size was capped by the `Fetch` that read it.)"""
    if response.status_code >= 500:
        raise ProviderUnavailable(f"{what} answered {response.status_code}")
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProviderError(f"{what} answered non-JSON (status {response.status_code})") from exc


class ProviderCache:
    """Discovery and JWKS for one issuer, cached with a TTL; a failed fetch keeps serving the
    last good copy; concurrent requests share one fetch.

    An unknown `kid` refetches the JWKS (`refetch_keys`): at once for a token the token endpoint
    just handed over (a key rotation must not fail a sign-in or a refresh); for tokens that
    anyone can send (bearer and logout tokens), at most one refetch that finds nothing new per
    `refetch_interval`.
    """

    def __init__(self, issuer: str, *, ttl: float = 3600.0, refetch_interval: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.issuer = issuer
        self._clock = clock
        self._refetch_interval = refetch_interval
        self._lock = threading.Lock()
        self._ttl = ttl
        # The two documents, "metadata" and "jwks": (fresh until, document). A stale one is
        # still the last good copy, served when a refetch fails.
        self._documents: dict[str, tuple[float, Any]] = {}
        self._untrusted_refetch_at = float("-inf")
        # Single-flight keys of this cache's own: another cache (another issuer, or a bearer
        # validator) on the same driver must never hand us its document.
        self._discovery_flight = ("logto", "discovery", issuer)
        self._jwks_flight = ("logto", "jwks", issuer)
        # Separate from the cold fetch: a refetch must not join a fetch that may have started
        # before the rotation it is looking for.
        self._refetch_flight = ("logto", "jwks-refetch", issuer)
        # The outcome of the `/oidc` probe (`_oidc_hint`): probed once, logged once.
        self._oidc_probed = False
        self._oidc_hint_text: str | None = None

    def _cached(self, name: str) -> Any:
        """The document `name` while it is fresh, else None."""
        entry = self._documents.get(name)
        return entry[1] if entry is not None and self._clock() < entry[0] else None

    def _last_good(self, name: str) -> Any:
        entry = self._documents.get(name)
        return entry[1] if entry is not None else None

    def _store(self, name: str, value: Any) -> None:
        with self._lock:
            self._documents[name] = (self._clock() + self._ttl, value)

    def metadata(self) -> Flow[ProviderMetadata]:
        cached = self._cached("metadata")
        if isinstance(cached, ProviderMetadata):
            return cached
        result: ProviderMetadata = yield from self._with_fallback(
            "metadata", Shared(self._discovery_flight, self._fetch_metadata))
        return result

    def cached_keys(self) -> ProviderKeys | None:
        """The JWKS if it is cached and fresh (no I/O)."""
        cached = self._cached("jwks")
        return cached if isinstance(cached, ProviderKeys) else None

    def keys(self) -> Flow[ProviderKeys]:
        cached = self.cached_keys()
        if cached is not None:
            return cached
        result: ProviderKeys = yield from self._with_fallback("jwks", Shared(self._jwks_flight, self._fetch_jwks))
        return result

    def refetch_keys(self, tried: ProviderKeys, *, trusted: bool = False) -> Flow[ProviderKeys | None]:
        """Newer keys than `tried` (which lacked a token's `kid`), or None.

        Keys stored since `tried` was read are returned without a fetch. `trusted` is for a
        token that came from the token endpoint over TLS: it refetches at once. Any other token
        can be forged by anyone, so those refetch at most once per `refetch_interval`; a refetch
        that finds a rotation (new kids) does not count, as only a real rotation makes one.
        """
        with self._lock:
            current = self._last_good("jwks")
            if isinstance(current, ProviderKeys) and current is not tried:
                return current  # a concurrent request refetched already
            previous = self._untrusted_refetch_at
            if not trusted:
                now = self._clock()
                if now - previous < self._refetch_interval:
                    return None
                self._untrusted_refetch_at = now  # taken before the fetch: concurrent ones wait
        try:
            keys: ProviderKeys = yield Shared(self._refetch_flight, self._fetch_jwks)
        except (ProviderError, ProviderUnavailable) as exc:
            log.warning("JWKS refetch failed, keeping the cached keys: %s", exc)
            return None
        if not trusted and keys.has_new_kids(tried):
            with self._lock:
                self._untrusted_refetch_at = previous
        return keys

    def _with_fallback(self, name: str, effect: Shared) -> Flow[Any]:
        try:
            return (yield effect)
        except (ProviderError, ProviderUnavailable) as exc:
            stale = self._last_good(name)
            if stale is None:
                raise
            log.warning("refreshing the provider's %s failed, serving the cached copy: %s", name, exc)
            return stale

    def _fetch_metadata(self) -> Flow[ProviderMetadata]:
        response = yield _get(self.issuer + _WELL_KNOWN)
        try:
            document = read_json(response, "discovery")
            if response.status_code != 200 or not isinstance(document, dict):
                raise ProviderError(f"discovery answered {response.status_code}")
            metadata = ProviderMetadata.parse(document, self.issuer)
        except ProviderError as exc:
            hint = yield from self._oidc_hint()
            if hint is None:
                raise
            raise ProviderError(f"{exc}; {hint}") from exc
        self._store("metadata", metadata)
        return metadata

    def _oidc_hint(self) -> Flow[str | None]:
        """The fix when discovery failed because the issuer lacks `/oidc` (Logto's SDKs take the
        tenant's endpoint without it; the issuer has it), else None. The other issuer is only
        named, never used: the issuer is a security setting, the app's to choose."""
        if self._oidc_probed or self.issuer.endswith("/oidc"):
            return self._oidc_hint_text
        candidate = self.issuer + "/oidc"
        try:
            response = yield _get(candidate + _WELL_KNOWN)
            document = read_json(response, "discovery") if response.status_code == 200 else None
        except ProviderUnavailable:
            return None  # unknown for now: probed again on the next failure
        except ProviderError:
            document = None
        hint = None
        if isinstance(document, dict) and document.get("issuer") == candidate:
            hint = f"{candidate} is the issuer: set AUTH_LOGTO_ISSUER to {candidate}"
        with self._lock:
            first = not self._oidc_probed
            self._oidc_probed, self._oidc_hint_text = True, hint
        if hint is not None and first:
            # Once per process: every sign-in fails the same way until the setting is fixed.
            log.error("discovery at AUTH_LOGTO_ISSUER=%s failed; %s", self.issuer, hint)
        return hint

    def _fetch_jwks(self) -> Flow[ProviderKeys]:
        metadata: ProviderMetadata = yield from self.metadata()
        response = yield _get(metadata.jwks_uri)
        document = read_json(response, "jwks")
        if response.status_code != 200 or not isinstance(document, dict):
            raise ProviderError(f"jwks answered {response.status_code}")
        keys = ProviderKeys.parse(document)
        self._store("jwks", keys)
        return keys
