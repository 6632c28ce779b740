"""The neutral request handler shared by the ASGI and WSGI middlewares.

`LogtoCore.handle(request)` is one flow (see `flow.py`) for every request: it returns a
`Response` to send (the routes under `base_path`, or a 503 when the session store is down) or
a `Passage`: the request goes on to the app with its user and session, and `Passage.finish()`
gives the Set-Cookie headers for the app's response. A refresh of the session's tokens is a
`Shared` effect inside that flow, waited on like any other I/O.

Given a `BearerValidator`, the same flow serves an API's access tokens too: a request with
`Authorization: Bearer` is the token's, verified by the validator's own flow (its caches), and
its cookie is not read. The header wins because it cannot come from a browser on its own: a
cookie can (cross-site requests carry it), so a bad token is refused (401), never passed on as
the cookie's user, and a page's cookie never lends its user to a request that named another.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial

from cachetools import TTLCache

from .._messages import Request, Response
from .._sessions.cookie import CookieStore
from .._sessions.manager import SESSION_COOKIE, SessionManager
from .._sessions.state import SessionState
from ..bearer import AccessTokenUser, BearerCredentials, BearerError, BearerValidator
from ..config import LogtoConfig
from ..errors import StoreUnavailable
from ..flow import Flow
from ..session import AnonymousUser, LogtoUser, Session, SessionlessAuth
from ..stores import SessionStore
from .pages import unavailable_page
from .routes import Routes
from .usercode import UserCode

__all__ = ["SESSION_COOKIE", "LogtoCore", "Passage", "Request", "Response", "SessionState"]

log = logging.getLogger("logto_middleware")

ANONYMOUS = AnonymousUser()


class Passage:
    """A request that goes on to the wrapped app: its user, its session, and the Set-Cookie
    headers its response must carry."""

    __slots__ = ("_cookies", "_core", "_state", "credentials", "session", "user")

    def __init__(self, core: LogtoCore, state: SessionState | None,
                 user: LogtoUser | AccessTokenUser | None = None) -> None:
        self._core = core
        self._state = state
        self._cookies: Sequence[str] | None = None  # the headers made so far (see `finish`)
        # What the ASGI adapter puts on `scope["auth"]` when there is no session (None: anonymous).
        self.credentials: SessionlessAuth | None = None
        self.session: Session | None = None
        data = state.data if state is not None else None
        self.user: LogtoUser | AccessTokenUser | AnonymousUser = ANONYMOUS
        if isinstance(user, AccessTokenUser):  # an API request: its token, no session
            self.user, self.credentials = user, BearerCredentials(user)
        elif state is not None and data is not None and user is not None:
            self.user = user
            self.session = core.session_factory(data, tokens=state, user=user)

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
            self._cookies = yield from self._core.manager.write_session(state)
        if state is not None:
            state.writable = False
        return self._cookies or ()

    def finish_without_io(self) -> Sequence[str] | None:
        """`finish()` when it needs no I/O (a cookie store, or nothing to store); None when the
        driver must run `finish()`."""
        state = self._state
        if state is not None and (state.dirty or state.cleared):
            cookies = self._core.manager.cookies_without_io(state)
            if cookies is None:
                return None
            self._cookies = cookies
        if state is not None:
            state.writable = False
        return self._cookies or ()


class FailureLog:
    """Rate-limits the logs of unexpected exceptions by where they come from.

    The key is the exception's type and its raise site (the file and line of the traceback's
    innermost frame), not its message or identity: a bug that every request of a storm meets,
    or that a hostile client triggers at will, raises a new exception each time with a message
    that may vary, from the same line. The first of a key is logged with its traceback; the
    next ones within `window` seconds are counted, and the first after the window logs one
    short line with that count. A key is forgotten `forget` seconds after its traceback (then
    the traceback is logged again); at most `sites` keys are kept (least recently added
    evicted first). Requests that waited on one shared failed flight raise its exception from
    the same frame (the drivers keep it), so they share its key too.
    """

    def __init__(self, logger: logging.Logger, window: float = 60.0, sites: int = 256, forget: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._window = window
        self._clock = clock
        # (exception type, "file:line" of the raise) -> [start of the current window, count in it]
        self._seen: TTLCache[tuple[str, str], list[float]] = TTLCache(sites, forget, timer=clock)
        self._lock = threading.Lock()

    def report(self, exc: BaseException, method: str, path: str, what: str = "logto_middleware failed") -> None:
        """Log `exc` (met by a request `method` `path`) unless its key was logged in this window;
        `what` says whose failure it is (ours by default, or the app's code we called)."""
        site = _raise_site(exc)
        key = (type(exc).__qualname__, site)
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is None:
                self._seen[key] = [now, 0]
            else:
                seen[1] += 1
                if now < seen[0] + self._window:
                    return
                count, seen[0], seen[1] = int(seen[1]), now, 0
        # The path only, never the query string (it may carry a code or a token).
        if seen is None:
            self._log.error("%s on %s %s", what, method, path, exc_info=exc)
        else:
            self._log.error("%s on %s %s: %s at %s again (%d times since its last report; "
                            "traceback logged before)", what, method, path, key[0], site, count)


def _under(path: str, prefixes: Sequence[str]) -> bool:
    """Whether `path` is one of `prefixes` or below one (whole segments: `/api` is not `/apis`)."""
    return any(path == prefix or path.startswith(prefix + "/") or not prefix for prefix in prefixes)


def _raise_site(exc: BaseException) -> str:
    """Where `exc` was raised: its traceback's innermost frame, as "file:line"."""
    tb = exc.__traceback__
    if tb is None:
        return "?"
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


class LogtoCore:
    """Routes under `config.base_path`, and the session of every other request."""

    def __init__(self, config: LogtoConfig, *, store: SessionStore | CookieStore | None = None,
                 clock: Callable[[], float] = time.time,
                 session_factory: Callable[..., Session] | None = None,
                 bearer: BearerValidator | None = None, bearer_only: Iterable[str] = ()) -> None:
        self.config = config
        self.bearer = bearer
        # Paths (within the app) whose requests only a bearer token authenticates: no cookie read.
        self.bearer_only = tuple(path.rstrip("/") for path in bearer_only)
        if self.bearer_only and bearer is None:
            raise ValueError("bearer_only paths need a bearer validator (bearer=BearerValidator(...))")
        self.clock = clock
        # Makes the request's `Session` (`AsyncSession`, `SyncSession`) from the session data
        # and the keywords `tokens` and `user`.
        self.session_factory = session_factory or partial(Session, profile=config.profile)
        self.failures = FailureLog(log)
        self.user_code = UserCode(config, self.failures.report)
        self.manager = SessionManager(config, store=store, clock=clock, hooks=self.user_code.refresh_hooks)
        self.routes = Routes(config, self.manager, self.user_code, self.failures.report)
        self._base = config.base_path

    def base_path(self, root: str) -> str:
        """Where the routes are on the site for an app served under `root` ("" for none)."""
        return self.routes.base_path(root)

    def is_route(self, path: str, root: str = "") -> bool:
        """Whether `path` (within the app served under `root`) is one of our routes."""
        return self._route(path, root) is not None

    def _route(self, path: str, root: str) -> str | None:
        """The route `path` names (within the app served under `root`), or None when not ours."""
        base = self._base if not root else self.routes.base_path(root)[len(root):]
        if path.startswith(base) and (len(path) == len(base) or path[len(base)] == "/"):
            return path[len(base):].strip("/")
        return None

    def keeps_user(self, user: object, request: Request, *, websocket: bool = False) -> bool:
        """Whether the request's user set by an outer middleware stays (no session read): a
        token's user, on a request that carries its token (the header wins, as in `handle`),
        other than to our routes."""
        return (isinstance(user, AccessTokenUser) and self._bearer_token(request) is not None
                and (websocket or not self.is_route(request.path, request.root)))

    def handle(self, request: Request, *, websocket: bool = False) -> Flow[Response | Passage]:
        """The one flow of every request: a `Response` to send, or the `Passage` to the app."""
        route = None if websocket else self._route(request.path, request.root)
        if route is not None:
            try:
                return (yield from self.routes.dispatch(request, route))
            except StoreUnavailable as exc:
                log.error("session store unavailable: %s", exc)
                return self.store_unavailable(request)
        if self.bearer is not None:
            token = self._bearer_token(request)
            if token is not None:
                try:
                    caller = yield from self.bearer.verify(token)
                except BearerError as exc:
                    return Response(exc.status, exc.headers(), exc.body())
                return Passage(self, None, caller)
            if self.bearer_only and _under(request.path, self.bearer_only):
                return Passage(self, None)  # an API path: its cookie is not a credential here
        if not self.manager.may_have_session(request):
            return Passage(self, None)  # the common anonymous request: nothing to read or write
        try:
            # A websocket's handshake response carries no cookie: nothing it changes is written.
            state = yield from self.manager.read_session(request, refresh=True, writable=not websocket)
        except StoreUnavailable as exc:
            # Nothing is logged out or lost: the browser keeps its cookie and retries.
            log.error("session store unavailable: %s", exc)
            return self.store_unavailable(request)
        user = self.user_code.session_user(state, request)
        return Passage(self, state if state.present or state.data is not None else None, user)

    def _bearer_token(self, request: Request) -> str | None:
        """The access token of a request with `Authorization: Bearer` ("" when the header has
        none: refused as a bad token). None: no such header, or an Auth.js session token (a JWE,
        five parts) with that session format, which the session codec reads as `getToken()` does."""
        header = request.headers.get("authorization", "")
        if header.partition(" ")[0].lower() != "bearer":
            return None
        token = header.partition(" ")[2].strip()
        if self.config.session_format == "authjs" and token.count(".") == 4:
            return None
        return token

    def fail_closed(self, exc: Exception, request: Request, *, websocket: bool = False) -> Response | Passage:
        """The outcome of a request whose flow raised `exc`, a bug (logged, see `FailureLog`): the
        app sees an anonymous request; our own routes answer 500, with no detail."""
        self.failures.report(exc, request.method, request.path)
        if websocket or not self.is_route(request.path, request.root):
            return Passage(self, None)
        return Response.json({"error": "InternalError"}, 500)

    def store_unavailable(self, request: Request) -> Response:
        if request.wants_json():
            response = Response.json({"error": "SessionStoreUnavailable"}, 503)
        else:
            response = Response.html(unavailable_page(), 503)
        response.headers.append(("retry-after", "5"))
        return response
