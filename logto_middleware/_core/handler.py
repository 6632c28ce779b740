"""The neutral request handler shared by the ASGI and WSGI middlewares.

`LogtoCore.handle(request)` is one flow (see `flow.py`) for every request: it returns a
`Response` to send (the routes under `base_path`, or a 503 when the session store is down) or
a `Passage`: the request goes on to the app with its user and session, and `Passage.finish()`
gives the Set-Cookie headers for the app's response. A refresh of the session's tokens is a
`Shared` effect inside that flow, waited on like any other I/O.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from urllib.parse import unquote

from cachetools import TTLCache

from .._protocol.provider import ProviderCache
from .._protocol.refresh import Refresher, Target
from .._sessions.authjs import AUTHJS_SESSION_COOKIE, AuthJsCookieStore
from .._sessions.cookies import delete_cookie, find_cookie, read_chunked, write_chunked
from .._sessions.state import REFRESH_DEFERRED, SessionState
from ..config import LogtoConfig
from ..coordination import RefreshCoordinator, lock_from_setting
from ..errors import OAuthError, ProviderError, ProviderUnavailable, StoreUnavailable, TokenValidationError
from ..flow import Flow, run_without_io
from ..session import AnonymousUser, LogtoUser, Session, SessionData
from ..stores import CookieStore, ServerSessions, SessionStore, store_from_setting
from .messages import Request, Response
from .pages import unavailable_page
from .redirects import request_origin
from .routes import Routes

__all__ = ["SESSION_COOKIE", "LogtoCore", "Passage", "Request", "Response", "SessionState"]

log = logging.getLogger("logto_middleware")

SESSION_COOKIE = "logto.session-token"
# What a refresh may raise: the first two end the session, the others keep it for a retry.
_REFRESH_ERRORS = (OAuthError, TokenValidationError, ProviderUnavailable, ProviderError)
ANONYMOUS = AnonymousUser()


class Passage:
    """A request that goes on to the wrapped app: its user, its session, and the Set-Cookie
    headers its response must carry."""

    __slots__ = ("_cookies", "_core", "_state", "session", "user")

    def __init__(self, core: LogtoCore, state: SessionState | None) -> None:
        self._core = core
        self._state = state
        self._cookies: Sequence[str] | None = None  # the headers made so far (see `finish`)
        data = state.data if state is not None else None
        if state is None or data is None:
            self.user: LogtoUser | AnonymousUser = ANONYMOUS
            self.session: Session | None = None
        else:
            self.user = data.user(core.config.profile)
            self.session = core.session_factory(data, tokens=state, user=self.user)

    @property
    def may_write(self) -> bool:
        """False when `finish()` can only return no header (nothing changed so far)."""
        state = self._state
        return self._cookies is not None or (state is not None and (state.dirty or state.cleared))

    def finish(self) -> Flow[Sequence[str]]:
        """Set-Cookie headers for the app's response (none when nothing changed). The response
        starts: a refresh the app asks for later is not made (its tokens could not be written)."""
        state = self._state
        # Made once (start_response may be called again with exc_info), again if the app changed
        # the session after they were made.
        if state is not None and (state.dirty or state.cleared):
            self._cookies = yield from self._core.write_session(state)
        if state is not None:
            state.writable = False
        return self._cookies or ()

    def finish_without_io(self) -> Sequence[str] | None:
        """`finish()` when it needs no I/O (a cookie store, or nothing to store); None when the
        driver must run `finish()`."""
        state = self._state
        if state is not None and (state.dirty or state.cleared):
            cookies = self._core.cookies_without_io(state)
            if cookies is None:
                return None
            self._cookies = cookies
        if state is not None:
            state.writable = False
        return self._cookies or ()


class FailureLog:
    """Logs an unexpected exception once per minute per kind: its type and message. A bug that
    every request of a storm meets (they share one failed refresh), or that a hostile client
    triggers at will, writes one line, not one per request; at most `kinds` lines a minute."""

    def __init__(self, logger: logging.Logger, window: float = 60.0, kinds: int = 256) -> None:
        self._log = logger
        self._seen: TTLCache[tuple[str, str], bool] = TTLCache(kinds, window)
        self._lock = threading.Lock()

    def report(self, exc: BaseException, method: str, path: str) -> None:
        # Not the traceback's innermost frame: the requests that waited on a shared flight raise
        # its failure from the driver, the one that ran it from where it happened.
        kind = (type(exc).__qualname__, str(exc)[:200])
        with self._lock:
            if kind in self._seen:
                return
            self._seen[kind] = True
        # The path only, never the query string (it may carry a code or a token).
        self._log.error("logto_middleware failed on %s %s", method, path, exc_info=exc)


class LogtoCore:
    """Routes under `config.base_path`, and the session of every other request."""

    def __init__(self, config: LogtoConfig, *, store: SessionStore | CookieStore | None = None,
                 clock: Callable[[], float] = time.time,
                 session_factory: Callable[..., Session] | None = None) -> None:
        self.config = config
        self.clock = clock
        # Makes the request's `Session` (`AsyncSession`, `SyncSession`) from the session data
        # and the keywords `tokens` and `user`.
        self.session_factory = session_factory or partial(Session, profile=config.profile)
        if store is None:
            store = store_from_setting(config.session_store)
        self.sessions: CookieStore | ServerSessions | AuthJsCookieStore
        self.session_cookie = SESSION_COOKIE
        if config.session_format == "authjs":
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
        self.refresher = Refresher(config, self.provider, clock=clock, coordinator=coordinator)
        self.routes = Routes(self)
        self.failures = FailureLog(log)
        self._base = config.base_path
        self._session_cookie_names = {secure: self.cookie_name(self.session_cookie, secure) for secure in (False, True)}

    # -- entry point -------------------------------------------------------------------------

    def is_route(self, path: str) -> bool:
        base = self._base
        return path.startswith(base) and (len(path) == len(base) or path[len(base)] == "/")

    def handle(self, request: Request, *, websocket: bool = False) -> Flow[Response | Passage]:
        """The one flow of every request: a `Response` to send, or the `Passage` to the app."""
        if not websocket and self.is_route(request.path):
            try:
                return (yield from self.routes.dispatch(request, request.path[len(self._base):].strip("/")))
            except StoreUnavailable as exc:
                log.error("session store unavailable: %s", exc)
                return self.store_unavailable(request)
        if not self.may_have_session(request):
            return Passage(self, None)  # the common anonymous request: nothing to read or write
        try:
            # A websocket's handshake response carries no cookie: nothing it changes is written.
            state = yield from self.read_session(request, refresh=True, writable=not websocket)
        except StoreUnavailable as exc:
            # Nothing is logged out or lost: the browser keeps its cookie and retries.
            log.error("session store unavailable: %s", exc)
            return self.store_unavailable(request)
        return Passage(self, state if state.present or state.data is not None else None)

    def report_failure(self, exc: Exception, method: str, path: str) -> None:
        """Log an unexpected exception the request failed closed on (see `FailureLog`)."""
        self.failures.report(exc, method, path)

    def store_unavailable(self, request: Request) -> Response:
        if request.wants_json():
            response = Response.json({"error": "SessionStoreUnavailable"}, 503)
        else:
            response = Response.html(unavailable_page(), 503)
        response.headers.append(("retry-after", "5"))
        return response

    # -- sessions ----------------------------------------------------------------------------

    def origin(self, request: Request) -> str:
        return request_origin(request.scheme, request.headers, base_url=self.config.base_url,
                              trust_host=self.config.trust_host, server=request.server)

    def is_secure(self, request: Request) -> bool:
        """Whether the app is served over https (which sets the cookies' prefix and `Secure`);
        the same answer as `origin()`, without parsing the host."""
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
        if name + "." in header:  # chunks: join them (or clear the leftovers)
            value, present = read_chunked(request.cookies, name)
        else:  # one cookie: found without parsing the others
            value = find_cookie(header, name)
            present = [name] if value is not None else []
        state = SessionState(self, name, secure, value, tuple(present), None, writable)
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
        data = self.sessions.cached(value, name)
        if data is None:
            data = yield from self.sessions.load(value, name)
        now = self.clock()
        if data is None or data.expires_at <= now:
            log.info("session cookie rejected (unknown, invalid or expired); clearing it")
            state.cleared = True
            return state
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
