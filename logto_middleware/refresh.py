"""Refreshing a session's tokens: single-flight, a grace window for just-rotated tokens, and
a short back-off after an outage."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from cachetools import TTLCache

from .config import LogtoConfig
from .errors import LogtoError
from .flow import Flow, Shared
from .oauth import token_grant
from .provider import ProviderCache
from .session import SessionData, session_claims
from .tokens import verify_id_token

__all__ = ["Guard", "Refresher", "refresh_key"]

Grant = Callable[[SessionData], "Flow[SessionData]"]
Guard = Callable[[SessionData, Grant], "Flow[SessionData | None]"]


def refresh_key(data: SessionData) -> str:
    """Key of one refresh: the refresh token *and* the access token it replaces.

    Logto returns the same refresh token while it is young, so the refresh token alone would
    map a later, genuinely needed refresh onto an old result; the access token changes on
    every refresh, so the pair names exactly one refresh.
    """
    material = f"{data.refresh_token}\x00{data.access_token}".encode()
    return hashlib.sha256(material).hexdigest()


class Refresher:
    """Runs refresh-token grants for sessions whose access token is about to expire."""

    def __init__(self, config: LogtoConfig, provider: ProviderCache, *,
                 clock: Callable[[], float] = time.time, grace: float = 60.0, backoff: float = 5.0) -> None:
        self._config = config
        self._provider = provider
        self._clock = clock
        self._lock = threading.Lock()
        # Results of recent refreshes: a request that still carries the old tokens gets these.
        self._recent: TTLCache[str, SessionData] = TTLCache(maxsize=4096, ttl=grace, timer=clock)
        # Recent outages: no new grant for the same tokens until the back-off ends.
        self._failed: TTLCache[str, LogtoError] = TTLCache(maxsize=4096, ttl=backoff, timer=clock)

    def needs_refresh(self, data: SessionData, now: float) -> bool:
        return (data.refresh_token is not None and data.access_token_expires_at is not None
                and data.access_token_expires_at - self._config.refresh_leeway <= now)

    def refresh(self, data: SessionData, around: Guard | None = None) -> Flow[SessionData | None]:
        """New tokens for `data`; raises `OAuthError`, `TokenValidationError`, `ProviderError` or
        `ProviderUnavailable` like the grant does. `around` wraps the grant (a server-side store
        uses it to refresh once across processes); it may return None for a vanished session."""
        for _ in range(2):
            key = refresh_key(data)
            with self._lock:
                recent = self._recent.get(key)
                failure = self._failed.get(key)
            if recent is not None:
                data = recent
            elif failure is not None:
                raise failure
            else:
                refreshed: SessionData | None = yield Shared(("refresh", key), partial(self._run, data, key, around))
                return refreshed
            if not self.needs_refresh(data, self._clock()):
                return data
        return data

    def _run(self, data: SessionData, key: str, around: Guard | None) -> Flow[SessionData | None]:
        if around is None:
            return (yield from self._grant(data, key))
        return (yield from around(data, partial(self._grant, key=key)))

    def _grant(self, data: SessionData, key: str) -> Flow[SessionData]:
        config = self._config
        assert data.refresh_token is not None
        try:
            metadata = yield from self._provider.metadata()
            tokens = yield from token_grant(metadata.token_endpoint, config.client_id, config.client_secret,
                                            {"grant_type": "refresh_token", "refresh_token": data.refresh_token})
            now = self._clock()
            changes: dict[str, Any] = {}
            if tokens.id_token:
                claims = yield from verify_id_token(
                    tokens.id_token, provider=self._provider, issuer=config.issuer, client_id=config.client_id,
                    algorithms=config.id_token_algorithms, now=now, leeway=config.clock_skew,
                    access_token=tokens.access_token, subject=str(data.claims.get("sub")))
                changes["claims"] = session_claims(claims)
                changes["id_token"] = tokens.id_token
        except LogtoError as exc:
            with self._lock:
                self._failed[key] = exc
            raise
        refreshed = data.with_changes(
            access_token=tokens.access_token,
            access_token_expires_at=int(now) + tokens.expires_in if tokens.expires_in is not None else None,
            refresh_token=tokens.refresh_token or data.refresh_token,
            scope=tokens.scope if tokens.scope is not None else data.scope,
            error=None, **changes)
        with self._lock:
            self._recent[key] = refreshed
        return refreshed
