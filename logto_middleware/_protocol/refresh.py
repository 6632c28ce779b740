"""Refresh-token grants: for the session's own access token and for API resources and Logto
organizations. Single-flight, a grace window for just-rotated tokens, a short back-off after
an outage."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from cachetools import TTLCache

from ..config import LogtoConfig
from ..coordination import RefreshCoordinator
from ..errors import LogtoError, OAuthError, StoreUnavailable, TokenValidationError
from ..flow import Flow, Shared
from ..session import SessionData, session_claims
from .freshness import keep_auth_time
from .oauth import token_grant
from .provider import ProviderCache
from .tokens import decode_unverified, verify_id_token

__all__ = ["Guard", "RefreshHooks", "Refresher", "SessionDataFailed", "Target", "refresh_key"]

log = logging.getLogger("logto_middleware")

Grant = Callable[[SessionData], "Flow[SessionData]"]
Settled = Callable[[SessionData], bool]
Guard = Callable[[SessionData, Grant, Settled], "Flow[SessionData | None]"]
RefreshKey = tuple[str | None, str | None, str]


class RefreshHooks(Protocol):
    """The app's code that a refresh of the session's own tokens runs (its `LogtoHooks`, which
    the core calls under the fail-closed rule): once per grant, inside the single flight."""

    def refreshed(self, before: SessionData, after: SessionData) -> Flow[SessionData | None]:
        """`after` with the app's fields; None when the app's code failed (the session ends)."""
        ...

    def refresh_failed(self, data: SessionData, error: LogtoError) -> Flow[None]: ...


class SessionDataFailed(OAuthError):
    """The app's `session_data` failed after a refresh: the session ends, as on a refused grant
    (its fields, roles perhaps, could no longer be vouched for)."""

    def __init__(self) -> None:
        super().__init__("session_data_failed", "the app's session_data hook failed")


@dataclass(frozen=True)
class Target:
    """An access token for an API resource (RFC 8707 `resource`), a Logto organization, or both:
    an API resource in an organization's context (Logto's organization-level API resources)."""

    resource: str | None = None
    organization_id: str | None = None

    @property
    def audience(self) -> str:
        """The token's `aud`."""
        return self.resource if self.resource is not None else f"urn:logto:organization:{self.organization_id}"

    @property
    def slot(self) -> str:
        """Where the session keeps the token: its audience, and for a resource in an
        organization's context the organization too (a resource indicator has no fragment,
        RFC 8707 2, so no resource's slot is another's)."""
        if self.resource is not None and self.organization_id is not None:
            return f"{self.resource}#organization={self.organization_id}"
        return self.audience

    def form(self) -> dict[str, str]:
        form = {"resource": self.resource} if self.resource is not None else {}
        if self.organization_id is not None:
            form["organization_id"] = self.organization_id
        return form

    def issued_in(self, access_token: str) -> bool:
        """Whether the provider's token is for this target, as far as it says: a JWT names its
        audience (and its organization); an opaque token cannot be checked."""
        try:
            claims = decode_unverified(access_token)[1]
        except TokenValidationError:
            return True
        aud = claims.get("aud")
        if self.audience not in (aud if isinstance(aud, list) else [aud]):
            return False
        return self.resource is None or claims.get("organization_id") == self.organization_id


def refresh_key(data: SessionData, target: Target | None = None) -> RefreshKey:
    """Key of one refresh: the refresh token *and* the access token it replaces (and the
    target's audience).

    Logto returns the same refresh token while it is young, so the refresh token alone would
    map a later, genuinely needed refresh onto an old result; the access token changes on
    every refresh, so the pair names exactly one refresh. (An in-process key only: it holds
    the tokens themselves, which the cached sessions hold anyway.)
    """
    return (data.refresh_token, data.access_token, target.slot if target is not None else "")


def _log_failure(exc: LogtoError) -> None:
    """One line per failed grant (the requests that waited on it, or came during its back-off,
    share its outcome without a grant of their own)."""
    if isinstance(exc, (OAuthError, TokenValidationError)):
        # invalid_grant (revoked, reused or expired refresh token) or a forged ID token.
        log.info("refresh rejected (%s); ending the session", exc)
    else:
        log.warning("refresh failed, keeping the session and retrying later: %s", exc)


class Refresher:
    """Runs refresh-token grants when a token is about to expire."""

    def __init__(self, config: LogtoConfig, provider: ProviderCache, *,
                 clock: Callable[[], float] = time.time, grace: float = 60.0, backoff: float = 5.0,
                 coordinator: RefreshCoordinator | None = None, hooks: RefreshHooks | None = None) -> None:
        self._config = config
        self._hooks = hooks
        self._provider = provider
        self._clock = clock
        # Runs a grant once across the app's processes (None: this process alone decides).
        self.coordinator = coordinator
        # Results of recent refreshes: a request that still carries the old tokens gets these.
        self._recent: TTLCache[RefreshKey, SessionData] = TTLCache(4096, grace, timer=clock)
        # Recent failures: no new grant for the same tokens until the back-off ends.
        self._failed: TTLCache[RefreshKey, LogtoError] = TTLCache(4096, backoff, timer=clock)
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe

    def needs_refresh(self, data: SessionData, now: float, target: Target | None = None) -> bool:
        if target is not None:
            token = data.resource_token(target.slot)
            return token is None or token[1] - self._config.refresh_leeway <= now
        return self.refresh_due_at(data) <= now

    def refresh_due_at(self, data: SessionData) -> float:
        """When the session's own access token is due for a refresh (never without a refresh token)."""
        if data.refresh_token is None or data.access_token_expires_at is None:
            return math.inf
        return data.access_token_expires_at - self._config.refresh_leeway

    def recent(self, data: SessionData, target: Target | None = None) -> SessionData | None:
        """What a refresh of these very tokens gave moments ago (within the grace window), if any."""
        with self._lock:
            return self._recent.get(refresh_key(data, target))

    def flight(self, data: SessionData, around: Guard | None = None, target: Target | None = None) -> Shared:
        """The effect that refreshes `data`'s tokens (or gets a token for `target`) once for every
        concurrent request (the driver's single flight), for a caller that found no `recent`
        result; raises the failure of a grant for these tokens that failed moments ago."""
        key = refresh_key(data, target)
        with self._lock:
            failure = self._failed.get(key)
        if failure is not None:
            raise failure.with_traceback(None)  # raised again and again during the back-off: no growing traceback
        return Shared(("refresh", key), partial(self._run, data, key, around, target))

    def refresh(self, data: SessionData, around: Guard | None = None,
                target: Target | None = None) -> Flow[SessionData | None]:
        """New tokens for `data` (or a token for `target`); raises `OAuthError`,
        `TokenValidationError`, `ProviderError` or `ProviderUnavailable` like the grant does.
        `around` wraps the grant (a server-side store uses it to refresh once across processes);
        it may return None for a vanished session."""
        for _ in range(2):
            recent = self.recent(data, target)
            if recent is None:
                refreshed: SessionData | None = yield self.flight(data, around, target)
                return refreshed
            data = recent
            if not self.needs_refresh(data, self._clock(), target):
                return data
        return data

    def _run(self, data: SessionData, key: RefreshKey, around: Guard | None,
             target: Target | None) -> Flow[SessionData | None]:
        with self._lock:
            recent = self._recent.get(key)
        if recent is not None:
            return recent  # a flight for these tokens ended between our check and our start
        grant = partial(self._grant, target=target)
        try:
            if around is not None:
                def settled(current: SessionData) -> bool:
                    # Another process did the work while we waited for the lock.
                    if target is not None:
                        return not self.needs_refresh(current, self._clock(), target)
                    return refresh_key(current) != refresh_key(data)

                refreshed = yield from around(data, grant, settled)
            elif self.coordinator is not None:
                refreshed = yield from self.coordinator.run(key, data, grant)
            else:
                refreshed = yield from grant(data)
        except LogtoError as exc:
            if not isinstance(exc, StoreUnavailable):  # the store's outage is not these tokens' failure
                with self._lock:
                    self._failed[key] = exc
                if target is None:  # (a target's failure is the caller's to report)
                    _log_failure(exc)
                    if self._hooks is not None:
                        yield from self._hooks.refresh_failed(data, exc)
            raise
        if refreshed is not None:
            with self._lock:
                self._recent[key] = refreshed
        return refreshed

    def _grant(self, data: SessionData, target: Target | None) -> Flow[SessionData]:
        config = self._config
        if data.refresh_token is None:
            raise LogtoError("the session has no refresh token")
        form = {"grant_type": "refresh_token", "refresh_token": data.refresh_token}
        if target is not None:
            form.update(target.form())
        metadata = yield from self._provider.metadata()
        tokens = yield from token_grant(metadata.token_endpoint, config.client_id, config.client_secret, form)
        now = self._clock()
        changes: dict[str, Any] = {}
        # A session without an ID token (an Auth.js cookie, whose `sub` is Auth.js's own user
        # id) keeps its profile: there is nothing to compare the new token's subject with.
        if tokens.id_token and target is None and data.id_token is not None:
            claims = yield from verify_id_token(
                tokens.id_token, provider=self._provider, issuer=config.issuer, client_id=config.client_id,
                algorithms=config.id_token_algorithms, now=now, leeway=config.clock_skew,
                access_token=tokens.access_token, subject=str(data.claims.get("sub")), trusted_source=True)
            changes["claims"] = session_claims(claims)
            changes["id_token"] = tokens.id_token
            if claims.get("auth_time") != data.claims.get("auth_time"):
                # A refresh is no sign-in: the session's auth_time stays the sign-in's (OpenID
                # Connect Core 12.2 says the new token's is the same anyway), so a refreshed
                # session never looks fresher to a fresh-authentication guard than it is.
                changes["claims"] = keep_auth_time(changes["claims"], data.claims)
                changes["claims_from_id_token"] = False  # stored beside the token, not read from it
        expires_at = int(now) + tokens.expires_in if tokens.expires_in is not None else None
        refresh_token = tokens.refresh_token or data.refresh_token
        if target is not None and not target.issued_in(tokens.access_token):
            # Kept, it would be served as this target's token. The rotated refresh token is kept:
            # the old one is spent.
            log.warning("the provider answered an access token that is not for %s; not kept", target.slot)
            refreshed = data.without_resource_token(target.slot).with_changes(refresh_token=refresh_token)
        elif target is not None:
            refreshed = data.with_resource_token(target.slot, tokens.access_token,
                                                 expires_at if expires_at is not None else int(now) + 3600,
                                                 tokens.scope or "").with_changes(refresh_token=refresh_token)
        else:
            refreshed = data.with_changes(
                access_token=tokens.access_token, access_token_expires_at=expires_at, refresh_token=refresh_token,
                scope=tokens.scope if tokens.scope is not None else data.scope, error=None, **changes)
            if self._hooks is not None:
                # Inside the grant: what a server-side store or the coordinator keeps has the fields.
                shaped = yield from self._hooks.refreshed(data, refreshed)
                if shaped is None:
                    raise SessionDataFailed()
                refreshed = shaped
        return refreshed
