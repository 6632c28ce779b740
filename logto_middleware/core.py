"""The neutral request handler shared by the ASGI and WSGI middlewares.

`LogtoCore.handle` takes a plain description of a request and is a flow (see `flow.py`) that
returns either a `Response` to send or a `Passage`: the request goes on to the app with a user
and a session, and `Passage.finish()` gives the Set-Cookie headers for the app's response.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple
from urllib.parse import unquote

from .access import REFRESH_DEFERRED, SessionState, SessionTokens
from .authjs import AUTHJS_SESSION_COOKIE, AuthJsCookieStore
from .cache import BoundedCache
from .config import LogtoConfig, ProfileMapper
from .cookies import delete_cookie, find_cookie, read_chunked, write_chunked
from .coordination import RefreshCoordinator, lock_from_setting
from .errors import OAuthError, ProviderError, ProviderUnavailable, StoreUnavailable, TokenValidationError
from .flow import Flow, Shared
from .messages import Request, Response
from .pages import unavailable_page
from .provider import ProviderCache
from .redirects import request_origin
from .refresh import Refresher, Target
from .routes import Routes
from .session import AnonymousUser, LogtoUser, Session, SessionData
from .stores import CookieStore, ServerSessions, SessionStore, store_from_setting

__all__ = ["LogtoCore", "Passage", "Request", "Response", "SessionState"]

log = logging.getLogger("logto_middleware")

SESSION_COOKIE = "logto.session-token"
# What a refresh may raise: the first two end the session, the others keep it for a retry.
_REFRESH_ERRORS = (OAuthError, TokenValidationError, ProviderUnavailable, ProviderError)
ANONYMOUS = AnonymousUser()


class Passage:
    """A request that goes on to the wrapped app."""

    __slots__ = ("_cookies", "_core", "_state", "pending", "session", "user")

    def __init__(self, core: LogtoCore, state: SessionState | None, user: LogtoUser | None = None) -> None:
        self._core = core
        self._state = state
        # The Set-Cookie headers made for the state as it is (see `finish`).
        self._cookies: Sequence[str] | None = None
        # The single flight the request must wait on before the app (the refresh of its tokens,
        # shared with concurrent requests): the adapter's driver joins it, then hands its outcome
        # to `settle` or `settle_failure`. The passage is built before the wait, which is idle
        # time for an event loop.
        self.pending: Shared | None = None
        if state is None or state.data is None:
            self.user: LogtoUser | AnonymousUser = ANONYMOUS
            self.session: Session | None = None
        else:
            user = user if user is not None else core._known_session(state.data)[1]
            self.session = core.session_factory(state.data, state, user)
            self.user = user

    def update(self, user: LogtoUser | None, cookies: Sequence[str] | None = None) -> None:
        """The session changed after this passage was built (a refresh it waited on): `user` is
        its user now (None: the session ended), `cookies` its Set-Cookie headers if made already."""
        if user is None:
            self.user, self.session = ANONYMOUS, None
        else:
            self.user = user
            if self.session is not None:
                self.session.user = user
        self._cookies = cookies

    def settle(self, refreshed: SessionData) -> None:
        """The pending refresh gave `refreshed`."""
        self.pending = None
        state = self._state
        if state is not None:
            state.dirty = True
            self._core._share_refresh(self, state, refreshed)

    def settle_failure(self, exc: Exception) -> bool:
        """The pending refresh failed with `exc`. False when that is no failure of the provider or
        of the tokens (a bug): the request then goes on anonymous and writes nothing, and the
        caller reports `exc` (`LogtoCore.report_failure`)."""
        self.pending = None
        state = self._state
        if state is None or state.data is None or not isinstance(exc, _REFRESH_ERRORS):
            self.abandon()
            return False
        kept = self._core._refresh_failed(state, state.data, exc)
        if kept is None:  # the session ended (`_refresh_failed` cleared it)
            state.data = None
            self.update(None)
        else:
            self._core._share_refresh(self, state, kept)
        return True

    def abandon(self) -> None:
        """Fail closed: the request goes on anonymous and writes no cookie."""
        self.user, self.session, self._state, self._cookies, self.pending = ANONYMOUS, None, None, None, None

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


class _SharedRefresh(NamedTuple):
    """What the requests that waited on one refresh of one cookie, in one second, share."""

    refreshed: SessionData
    cookie_value: str | None
    present: tuple[str, ...]
    second: int
    rolled: bool
    settled: SessionData  # `refreshed`, or its rolled copy
    user: LogtoUser
    cookies: tuple[str, ...]


def _plain_session(profile: ProfileMapper | None, data: SessionData, tokens: SessionTokens,
                   user: LogtoUser) -> Session:
    return Session(data, profile, tokens, user)


class LogtoCore:
    """Routes under `config.base_path`, and the session of every other request."""

    def __init__(self, config: LogtoConfig, *, store: SessionStore | CookieStore | None = None,
                 clock: Callable[[], float] = time.time,
                 session_factory: Callable[[SessionData, SessionTokens, LogtoUser], Session] | None = None) -> None:
        self.config = config
        self.clock = clock
        self.session_factory = session_factory or partial(_plain_session, config.profile)
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
        if not isinstance(self.sessions, ServerSessions):  # a store's own lock coordinates those
            lock = lock_from_setting(config.refresh_lock)
            if lock is not None:
                coordinator = RefreshCoordinator(lock, config.secrets)
        self.refresher = Refresher(config, self.provider, clock=clock, coordinator=coordinator)
        self.routes = Routes(self)
        self._base = config.base_path
        # Per URL scheme, what the quick path needs: the store of decoded cookies, secure or not,
        # the session cookie's name, the prefix of its chunks, the names present, "name=". Empty when the
        # quick path is off: with trust_host (X-Forwarded-Proto decides), or server-side sessions.
        self._quick: dict[str, tuple[CookieStore | AuthJsCookieStore, bool, str, str, tuple[str], str]] = {}
        if not config.trust_host and not isinstance(self.sessions, ServerSessions):
            for scheme in ("http", "https", "ws", "wss"):
                secure = self._is_secure_scheme(scheme)
                name = self.cookie_name(self.session_cookie, secure)
                self._quick[scheme] = (self.sessions, secure, name, name + ".", (name,), name + "=")
        # Per decoded session (the stores cache those): its user, and the time until which it
        # needs neither a refresh nor a roll and has not expired (the quick path's one check).
        self._known: BoundedCache[int, tuple[SessionData, LogtoUser, float]] = BoundedCache(4096)
        self._set_cookies: BoundedCache[tuple[object, ...], tuple[str, ...]] = BoundedCache(256)
        self._after_refresh: BoundedCache[int, _SharedRefresh] = BoundedCache(64)
        self._logged_failures: BoundedCache[int, Exception] = BoundedCache(64)

    def _known_session(self, data: SessionData) -> tuple[SessionData, LogtoUser, float]:
        """(data, its user, the time until which it needs neither a refresh nor a roll and has
        not expired), built once per decoded session."""
        hit = self._known.get(id(data))
        if hit is not None and hit[0] is data:
            return hit
        quiet_until = min(self.refresher.refresh_due_at(data), self._roll_due_at(data), data.expires_at)
        hit = (data, LogtoUser(data.claims, self.config.profile), quiet_until)
        self._known.set(id(data), hit)
        return hit

    # -- entry point -------------------------------------------------------------------------

    def is_route(self, path: str) -> bool:
        base = self._base
        return path.startswith(base) and (len(path) == len(base) or path[len(base)] == "/")

    def handle(self, request: Request, *, websocket: bool = False) -> Flow[Response | Passage]:
        try:
            if not websocket and self.is_route(request.path):
                return (yield from self.routes.dispatch(request, request.path[len(self._base):].strip("/")))
            # A websocket's handshake response carries no cookie: nothing it changes is written.
            state = yield from self.read_session(request, refresh=True, writable=not websocket)
        except StoreUnavailable as exc:
            # Nothing is logged out or lost: the browser keeps its cookie and retries.
            log.error("session store unavailable: %s", exc)
            return self.store_unavailable(request)
        return Passage(self, state if state.present or state.data is not None else None)

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
        if self.config.trust_host and not self.config.base_url:
            proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
            if proto in ("http", "https"):
                return proto == "https"
        return self._is_secure_scheme(request.scheme)

    def _is_secure_scheme(self, scheme: str) -> bool:
        if self.config.base_url:
            return self.config.base_url.startswith("https:")
        return scheme in ("https", "wss")

    def may_have_session(self, cookie_header: str, authorization: str) -> bool:
        """False when a request certainly carries no session, so it can pass straight through:
        every session cookie name (chunks and prefixes included) contains the base name."""
        if self.session_cookie in cookie_header:
            return True
        return isinstance(self.sessions, AuthJsCookieStore) and authorization.startswith("Bearer ")

    def quick_passage(self, cookie_header: str, scheme: str) -> Passage | Flow[Passage] | None:
        """The quick path of a request whose session cookie was decoded before (one unchunked
        cookie in the cookie store): no parsing of the other cookies, no `Request`.

        A `Passage` when the session needs nothing now, or only a refresh of its tokens (then the
        passage's `pending` effect is that refresh); a flow giving the `Passage` when its expiry
        needs a roll; None sends the request down the full path.
        """
        quick = self._quick.get(scheme)
        if quick is None:
            return None
        store, secure, name, chunk_prefix, present, assignment = quick
        if cookie_header.startswith(assignment) and cookie_header[len(assignment):len(assignment) + 1] != '"':
            # The usual header, ours first: what find_cookie would return, without its scan.
            end = cookie_header.find(";")
            if end >= 0 and cookie_header.find(chunk_prefix, end) >= 0:
                return None  # chunks: the full path joins (or clears) them
            value: str | None = cookie_header[len(assignment):end if end >= 0 else None].strip()
        elif chunk_prefix in cookie_header:
            return None
        else:
            value = find_cookie(cookie_header, name)
        entry = store.cached_entry(value, name) if value else None
        if entry is None:
            return None
        # The store's copy of the value: a request waiting on a refresh holds no 1-2 KB copy of its own.
        value, data = entry
        now = self.clock()
        _, user, quiet_until = self._known_session(data)
        if now < quiet_until:  # the usual case: nothing to do
            return Passage(self, SessionState(self, name, secure, value, present, data), user)
        if data.expires_at <= now:
            return None
        # Due for a refresh or a roll. When another request refreshed these tokens moments ago,
        # take its result (and its sealed cookie) without a flow.
        state = SessionState(self, name, secure, value, present, data)
        due = self.refresher.needs_refresh(data, now)
        refreshed = self.refresher.recent(data) if due else None
        if refreshed is None and due:
            return self._refreshed_passage(state, data, user)
        if refreshed is None or self._known_session(refreshed)[2] <= now:
            return self._settled_passage(state, data, now)
        # A request that came just after the refresh: it shares the outcome as those that waited.
        passage = Passage(self, state, user)
        state.dirty = True
        self._share_refresh(passage, state, refreshed)
        return passage

    def _refreshed_passage(self, state: SessionState, data: SessionData, user: LogtoUser) -> Passage:
        """The passage of a cookie session whose tokens need a refresh that nobody made yet: its
        `pending` effect is the refresh's single flight, shared with concurrent requests."""
        passage = Passage(self, state, user)
        try:
            passage.pending = self.refresher.flight(data)
        except _REFRESH_ERRORS as exc:  # a grant for these tokens failed moments ago
            passage.settle_failure(exc)
        return passage

    def _share_refresh(self, passage: Passage, state: SessionState, data: SessionData) -> None:
        """Put the refreshed `data` in the request's state and passage. The requests that waited
        on one refresh of one cookie share its outcome: the session object (rolled once when its
        expiry is due), its user and its Set-Cookie headers are made once for all of them."""
        now = self.clock()
        second = int(now)
        rolls = now >= self._roll_due_at(data)
        shared = self._after_refresh.get(id(data))
        # The store's copy of the cookie value and the quick path's tuple of names are shared
        # objects too; Max-Age and a roll count from the second.
        if (shared is not None and shared.refreshed is data and shared.cookie_value is state.cookie_value
                and shared.present is state.present and shared.second == second and shared.rolled == rolls):
            state.data, state.dirty, state.rolled = shared.settled, False, rolls
            passage.update(shared.user, shared.cookies)
            return
        settled = self._roll(state, data, now)
        user = self._known_session(settled)[1]
        cookies = self.cookies_without_io(state) if state.dirty or state.cleared else ()
        passage.update(user, cookies)
        if cookies and isinstance(cookies, tuple):
            self._after_refresh.set(id(data), _SharedRefresh(data, state.cookie_value, state.present, second, rolls,
                                                             settled, user, cookies))

    def _settled_passage(self, state: SessionState, data: SessionData, now: float) -> Flow[Passage]:
        yield from self._settle(state, data, now, refresh=True)
        return Passage(self, state)

    def cookie_name(self, base: str, secure: bool, host_only: bool = False) -> str:
        if not secure:
            return base
        return ("__Host-" if host_only else "__Secure-") + base

    def read_session(self, request: Request, *, refresh: bool, writable: bool = True) -> Flow[SessionState]:
        secure = self.is_secure(request)
        name = self.cookie_name(self.session_cookie, secure)
        value, present = read_chunked(request.cookies, name)
        state = SessionState(self, cookie_name=name, secure=secure, cookie_value=value, present=tuple(present),
                             writable=writable)
        if value is None and present:
            state.cleared = True  # chunks without a first one: leftovers or forged
            return state
        if value is None and isinstance(self.sessions, AuthJsCookieStore):
            # Like Auth.js's getToken(): the same JWE may come as a bearer token (cross-origin API
            # calls). There is no cookie to write back then.
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme == "Bearer" and token:
                value, state.cookie_value, state.writable = unquote(token.strip()), None, False
        if value is None:
            return state
        data = yield from self.sessions.load(value, name)
        now = self.clock()
        if data is None or data.expires_at <= now:
            log.info("session cookie rejected (unknown, invalid or expired); clearing it")
            state.cleared = True
            return state
        yield from self._settle(state, data, now, refresh=refresh)
        return state

    def _settle(self, state: SessionState, data: SessionData, now: float, *, refresh: bool) -> Flow[None]:
        """Refresh the tokens when they are about to expire, roll the expiry when due; the
        outcome goes into `state`."""
        if refresh and self.refresher.needs_refresh(data, now) and not state.may_refresh:
            data = data.with_changes(error=REFRESH_DEFERRED)
        elif refresh and self.refresher.needs_refresh(data, now):
            try:
                refreshed = yield from self.refresh_tokens(state, data)
            except _REFRESH_ERRORS as exc:
                refreshed = self._refresh_failed(state, data, exc)
            if refreshed is None:
                state.data = None
                return
            data = refreshed
        self._roll(state, data, now)

    def _first_report(self, exc: Exception) -> bool:
        """True the first time `exc` is reported (to be logged), False after. Every request that
        waited on a failed grant, or came during its back-off, gets the same exception object:
        one log line for all of them (an outage, or a bug, would write a line per request)."""
        if self._logged_failures.get(id(exc)) is exc:
            return False
        self._logged_failures.set(id(exc), exc)
        return True

    def report_failure(self, exc: Exception, method: str, path: str) -> None:
        """Log an unexpected exception the request failed closed on, with its traceback: once
        for all the requests that share it."""
        if self._first_report(exc):
            log.error("logto_middleware failed on %s %s", method, path, exc_info=exc)

    def _refresh_failed(self, state: SessionState, data: SessionData, exc: Exception) -> SessionData | None:
        """The session after a failed refresh: None (and cleared) when it cannot go on."""
        first = self._first_report(exc)
        if isinstance(exc, (OAuthError, TokenValidationError)):
            # invalid_grant (revoked, reused or expired refresh token) or a forged ID token:
            # this session cannot be trusted or continued.
            if first:
                log.info("refresh rejected (%s); ending the session", exc)
            state.cleared = True
            return None
        if first:
            log.warning("refresh failed, keeping the session and retrying later: %s", exc)
        # Not stored: the next request simply tries again.
        return data.with_changes(error="RefreshAccessTokenError")

    def _roll_due_at(self, data: SessionData) -> float:
        """When the session's expiry is due to move forward (its update age has passed)."""
        return data.updated_at + self.config.session_update_age

    def _roll(self, state: SessionState, data: SessionData, now: float) -> SessionData:
        """Put `data` in `state` (and return it), its expiry moved forward when the update age has passed."""
        if now >= self._roll_due_at(data):
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
        if isinstance(self.sessions, CookieStore):
            # Requests sharing one refreshed session share its sealed value (`seal`) and, through
            # `_set_cookies_for`, one tuple of headers.
            return self._set_cookies_for(state, data, self.sessions.seal(data))
        return None

    def _set_cookies_for(self, state: SessionState, data: SessionData, value: str) -> Sequence[str]:
        state.dirty = False
        if value == state.cookie_value and not state.rolled:
            return ()  # a server-side session whose id did not change
        max_age = data.expires_at - int(self.clock())
        if max_age < 0:
            max_age = 0
        key = (value, max_age, state.cookie_name, state.secure, state.present)
        headers = self._set_cookies.get(key)
        if headers is None:
            # Concurrent requests that refreshed one session send the same headers: built once,
            # and shared (hence a tuple).
            headers = tuple(write_chunked(state.cookie_name, value, max_age=max_age, secure=state.secure,
                                          present=state.present))
            self._set_cookies.set(key, headers)
        return headers

    def clear_session(self, state: SessionState) -> list[str]:
        names = state.present or [state.cookie_name]
        return [delete_cookie(name, secure=state.secure) for name in names]

    def new_session(self, claims: dict[str, object], **tokens: object) -> SessionData:
        now = int(self.clock())
        return SessionData(claims=dict(claims), expires_at=now + self.config.session_max_age,
                           updated_at=now, **tokens)  # type: ignore[arg-type]
