"""Where a request's session comes from and goes to: the codec that the configuration picks
(the Logto cookie, the Auth.js cookie, or a server-side session id), the read of a request's
session (refreshed and rolled when due), and the Set-Cookie headers that write it back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from urllib.parse import unquote

from .._messages import Request
from .._protocol.provider import ProviderCache
from .._protocol.refresh import Refresher, RefreshHooks, Target
from ..config import LogtoConfig, LogtoConfigError
from ..coordination import RefreshCoordinator, lock_from_setting
from ..errors import OAuthError, ProviderError, ProviderUnavailable, StoreUnavailable, TokenValidationError
from ..flow import Flow, run_without_io
from ..session import SessionData
from ..stores import SessionStore, store_from_setting
from .authjs import AUTHJS_SESSION_COOKIE, AuthJsCookieStore
from .cookie import CookieStore
from .cookies import DuplicateCookie, delete_cookie, find_cookie, read_chunked, write_chunked
from .server import ServerSessions
from .state import REFRESH_DEFERRED, SessionState

__all__ = ["SESSION_COOKIE", "SessionManager"]

log = logging.getLogger("logto_middleware")

SESSION_COOKIE = "logto.session-token"
# What a refresh may raise: the first two end the session, the others keep it for a retry.
_REFRESH_ERRORS = (OAuthError, TokenValidationError, ProviderUnavailable, ProviderError)


class SessionManager:
    """Reads, refreshes, rolls and writes the sessions of one app."""

    def __init__(self, config: LogtoConfig, *, store: SessionStore | CookieStore | None = None,
                 clock: Callable[[], float] = time.time, hooks: RefreshHooks | None = None) -> None:
        self.config = config
        self.clock = clock
        self.leeway = config.clock_skew
        if store is None:
            store = store_from_setting(config.session_store)
        self.sessions: CookieStore | ServerSessions | AuthJsCookieStore
        self.session_cookie = SESSION_COOKIE
        if config.session_format == "authjs":
            if store is not None and not isinstance(store, CookieStore):
                # As the configuration refuses session_store with it: never ignore a store silently
                # (the app would believe in server-side sign-out and back-channel logout).
                raise LogtoConfigError("logto_middleware: session_format authjs keeps the session in Auth.js's "
                                       "cookie: it cannot be combined with a server-side store (store=...)")
            self.sessions = AuthJsCookieStore(config.secrets, max_age=config.session_max_age, clock=clock)
            self.session_cookie = AUTHJS_SESSION_COOKIE
        elif store is None or isinstance(store, CookieStore):
            self.sessions = store if store is not None else CookieStore(config.secrets)
        else:
            self.sessions = ServerSessions(store, config.secrets, clock=clock)
        self.provider = ProviderCache(config.issuer, clock=clock)
        coordinator = None
        if not self.sessions.server_side:  # a store's own lock coordinates those
            lock = lock_from_setting(config.refresh_lock)
            if lock is not None:
                coordinator = RefreshCoordinator(lock, config.secrets)
        self.refresher = Refresher(config, self.provider, clock=clock, coordinator=coordinator, hooks=hooks)
        self.server_side = self.sessions.server_side
        # On https our session cookie is `__Host-` (no sibling host can plant one); Auth.js's keeps
        # Auth.js's name, which the Auth.js app sharing it reads and writes. The name of earlier
        # versions (`__Secure-`) is still read, so an upgrade signs no one out, and rewritten.
        authjs = config.session_format == "authjs"
        self._session_cookie_names = {
            secure: self.cookie_name(self.session_cookie, secure, host_only=not authjs) for secure in (False, True)}
        self._legacy_cookie_names = {
            False: None, True: None if authjs else self.cookie_name(self.session_cookie, True)}

    def is_secure(self, request: Request) -> bool:
        """Whether the app is served over https (which sets the cookies' prefix and `Secure`);
        the same answer as the routes' `origin()`, without parsing the host."""
        if self.config.base_url:
            return self.config.base_url.startswith("https:")
        if self.config.trust_host:
            proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
            if proto in ("http", "https"):
                return proto == "https"
        return request.scheme in ("https", "wss")

    def may_have_session(self, request: Request) -> bool:
        """False when a request certainly carries no session, so it can pass straight through:
        every session cookie name (chunks and prefixes included) contains the base name."""
        if self.session_cookie in request.headers.get("cookie", ""):
            return True
        return (isinstance(self.sessions, AuthJsCookieStore)
                and request.headers.get("authorization", "").startswith("Bearer "))

    def cookie_name(self, base: str, secure: bool, host_only: bool = False) -> str:
        if not secure:
            return base
        return ("__Host-" if host_only else "__Secure-") + base

    def read_session(self, request: Request, *, refresh: bool, writable: bool = True) -> Flow[SessionState]:
        """The request's session, its tokens refreshed (`refresh`) and its expiry rolled when due."""
        secure = self.is_secure(request)
        name = self._session_cookie_names[secure]
        header = request.headers.get("cookie", "")
        present: tuple[str, ...]
        try:
            if name + "." not in header and (value := find_cookie(header, name)) is not None:
                read_as, present = name, (name,)  # the common case: one cookie, found without parsing the others
            else:
                read_as, value, present = self._session_cookie(request, name, self._legacy_cookie_names[secure])
        except DuplicateCookie as exc:
            # Two cookies of one name: one may be planted (a sibling host's `Domain=` cookie, or a
            # longer path, comes first), and nothing tells which. The request is anonymous, and
            # nothing is deleted: a deletion reaches only our own cookie (the planted one has
            # another domain or path), so the user's session would be lost and the planted one
            # kept. A sign-out or a new sign-in still replaces or clears our own.
            log.info("session cookie sent twice (one may be planted by a sibling host); request treated as anonymous")
            return SessionState(self, name, secure, None, exc.args, None, writable)
        state = SessionState(self, name, secure, value, present, None, writable)
        if value is None and present:
            state.cleared = True  # chunks without a first one: leftovers or forged
            return state
        if value is None and isinstance(self.sessions, AuthJsCookieStore):
            # Like Auth.js's getToken(): the same JWE may come as a bearer token (cross-origin API
            # calls). There is no cookie to write back then.
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme == "Bearer" and token:
                value, state.cookie_value, state.writable = unquote(token.strip()), None, False
        if not value:
            return state
        # The common case: a cookie decoded before (the codec's decoded-cookie cache).
        data = self.sessions.cached(value, read_as)
        if data is None:
            data = yield from self.sessions.load(value, read_as)
        now = self.clock()
        if data is None or data.expires_at <= now:
            log.info("session cookie rejected (unknown, invalid or expired); clearing it")
            state.cleared = True
            return state
        if read_as != name:
            # An earlier version's cookie: written again under the new name (the old one deleted).
            state.dirty = state.rolled = True
        if refresh and self.refresher.needs_refresh(data, now):
            if state.may_refresh:
                try:
                    refreshed = yield from self.refresh_tokens(state, data)
                except _REFRESH_ERRORS as exc:
                    refreshed = self._refresh_failed(state, data, exc)
                if refreshed is None:
                    state.data = None
                    return state
                data = refreshed
            else:
                data = data.with_changes(error=REFRESH_DEFERRED)
        self._roll(state, data, now)
        return state

    def _session_cookie(self, request: Request, name: str,
                        legacy: str | None) -> tuple[str, str | None, tuple[str, ...]]:
        """(the name it was read under, the value, the names of the cookie and its chunks) of the
        session cookie `name`, or else of `legacy`; `DuplicateCookie` when one came twice."""
        header = request.headers.get("cookie", "")
        for candidate in (name, legacy):
            if candidate is None:
                break
            if candidate + "." in header:  # chunks: join them (or clear the leftovers)
                value, present = read_chunked(request.cookies, candidate)
                if present:
                    return candidate, value, tuple(present)
            else:  # one cookie: found without parsing the others
                value = find_cookie(header, candidate)
                if value is not None:
                    return candidate, value, (candidate,)
        return name, None, ()

    def _refresh_failed(self, state: SessionState, data: SessionData, exc: Exception) -> SessionData | None:
        """The session after a failed refresh (logged by the refresher, once per grant): None
        (and cleared) when it cannot go on."""
        if isinstance(exc, (OAuthError, TokenValidationError)):
            # invalid_grant (revoked, reused or expired refresh token) or a forged ID token:
            # this session cannot be trusted or continued.
            state.cleared = True
            return None
        # Not stored: the next request simply tries again.
        return data.with_changes(error="RefreshAccessTokenError")

    def _roll(self, state: SessionState, data: SessionData, now: float) -> SessionData:
        """Put `data` in `state` (and return it), its expiry moved forward when the update age has passed."""
        if now >= data.updated_at + self.config.session_update_age:
            data = data.with_changes(updated_at=int(now), expires_at=int(now) + self.config.session_max_age)
            state.dirty = state.rolled = True
        state.data = data
        return data

    def refresh_tokens(self, state: SessionState, data: SessionData,
                       target: Target | None = None) -> Flow[SessionData | None]:
        """Refresh the session's tokens (or get one for `target`) and record the result in
        `state`; None (and the session cleared) when it vanished from a server-side store."""
        if isinstance(self.sessions, ServerSessions) and state.cookie_value is not None:
            # Stored inside the cross-process lock already.
            refreshed = yield from self.refresher.refresh(
                data, around=partial(self.sessions.refresh_once, state.cookie_value), target=target)
        else:
            refreshed = yield from self.refresher.refresh(data, target=target)
            state.dirty = True
        if refreshed is None:
            state.cleared = True
        state.data = refreshed
        return refreshed

    def write_session(self, state: SessionState) -> Flow[Sequence[str]]:
        cookies = self.cookies_without_io(state)
        data = state.data
        if cookies is not None or data is None:
            return cookies or []
        try:
            value = yield from self.sessions.save(data, state.cookie_value, state.cookie_name)
        except StoreUnavailable as exc:
            # The response is already under way: keep the stored session as it was.
            log.error("session store unavailable, session not updated: %s", exc)
            return []
        return self._set_cookies_for(state, data, value)

    def cookies_without_io(self, state: SessionState) -> Sequence[str] | None:
        """The Set-Cookie headers of `state` when writing it needs no store I/O; else None."""
        if not state.writable:
            return []
        if state.cleared:
            return self.clear_session(state)
        data = state.data
        if not state.dirty or data is None:
            return []
        if self.sessions.server_side:
            return None
        # A cookie codec seals without I/O.
        return self._set_cookies_for(state, data, run_without_io(self.sessions.save(data, None, state.cookie_name)))

    def _set_cookies_for(self, state: SessionState, data: SessionData, value: str) -> Sequence[str]:
        state.dirty = False
        if value == state.cookie_value and not state.rolled:
            return ()  # a server-side session whose id did not change
        max_age = max(0, data.expires_at - int(self.clock()))
        return write_chunked(state.cookie_name, value, max_age=max_age, secure=state.secure, present=state.present)

    def clear_session(self, state: SessionState) -> list[str]:
        names = state.present or [state.cookie_name]
        return [delete_cookie(name, secure=state.secure) for name in names]

    def new_session(self, claims: dict[str, object], **tokens: object) -> SessionData:
        now = int(self.clock())
        return SessionData(claims=dict(claims), expires_at=now + self.config.session_max_age,
                           updated_at=now, **tokens)  # type: ignore[arg-type]
