"""The app's own code that the middleware calls (the profile mapper, the `LogtoHooks`), run under
the fail-closed rule: when it raises, the request goes on anonymous and the session it could not
map is cleared, or the sign-in ends on the error page, or a refresh ends the session, or an
event is forgotten; never a 500, never a session that keeps failing. Hooks are called through
the `CallUser` effect, so one flow serves plain and (under ASGI) async hooks."""

from __future__ import annotations

import copy
import inspect
import json
import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from .._messages import Request
from .._sessions.authjs import TOKEN_MEMBERS
from .._sessions.state import SessionState
from ..config import LogtoConfig, LogtoConfigError
from ..errors import LogtoError, OAuthError, TokenValidationError
from ..flow import CallUser, Flow
from ..hooks import overridden_hooks
from ..session import LogtoUser, SessionData
from .redirects import safe_redirect

__all__ = ["UserCode"]

log = logging.getLogger("logto_middleware")

# Reports an unexpected exception (rate-limited, see `FailureLog`): exception, method, path, whose.
Report = Callable[[BaseException, str, str, str], None]
# Where a refresh's hooks run: inside a shared flight, for no request in particular.
_REFRESH = ("-", "(refresh)")
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


class UserCode:
    """Calls the app's profile mapper and hooks for the middleware, and contains what they raise."""

    def __init__(self, config: LogtoConfig, report: Report) -> None:
        self._profile = config.profile
        self._report = report
        hooks = config.hooks
        # Only the hooks the app overrides: the others cost nothing.
        self._hooks = overridden_hooks(hooks) if hooks is not None else {}
        self._max_fields = hooks.max_session_data if hooks is not None else 0

    def require_sync(self) -> None:
        """Raise `LogtoConfigError` when a hook is a coroutine function: a WSGI server has no
        event loop to run it on (told when the middleware is made, not at the first sign-in)."""
        names = [name for name, hook in self._hooks.items() if inspect.iscoroutinefunction(hook)]
        if names:
            raise LogtoConfigError(f"logto_middleware: hooks ({', '.join(names)}) are coroutine functions "
                                   "(async def), which a WSGI app cannot await: write them without async, "
                                   "or serve the app through the ASGI middleware")

    @property
    def refresh_hooks(self) -> UserCode | None:
        """This object as the refresher's `RefreshHooks` when the app has hooks a refresh runs."""
        return self if "session_data" in self._hooks or "refresh_failed" in self._hooks else None

    # -- the profile mapper ----------------------------------------------------------------------

    def user(self, data: SessionData, request: Request) -> LogtoUser | None:
        """The user of a session, mapped by the profile mapper; None when the mapper failed
        (reported)."""
        return self._user(data, request.method, request.path)

    def _user(self, data: SessionData, method: str, path: str) -> LogtoUser | None:
        try:
            return data.user(self._profile)
        except Exception as exc:  # the app's code: any exception is its bug, not ours to raise
            self._report(exc, method, path, "the app's profile mapper raised")
            return None

    def session_user(self, state: SessionState, request: Request) -> LogtoUser | None:
        """The user of the request's session; None when there is none or the mapper cannot map
        it, and then the session is cleared: kept, it would fail on every request."""
        data = state.data
        if data is None:
            return None
        user = self.user(data, request)
        if user is None:
            state.data, state.cleared = None, True
        return user

    # -- hooks -----------------------------------------------------------------------------------

    def _call(self, name: str, args: tuple[Any, ...], method: str, path: str) -> Flow[tuple[bool, Any]]:
        """(True, the hook's answer), or (False, None) when it raised (reported)."""
        try:
            return True, (yield CallUser(self._hooks[name], args))
        except Exception as exc:
            self._report(exc, method, path, f"the app's {name} hook raised")
            return False, None

    def _event(self, name: str, args: tuple[Any, ...], method: str, path: str) -> Flow[None]:
        if name in self._hooks:
            yield from self._call(name, args, method, path)  # its answer and its failure are ignored

    def sign_in(self, data: SessionData, user: LogtoUser, request: Request,
                origin: str) -> Flow[SessionData | str | None]:
        """A new session's data with the app's fields when the sign-in goes on; the URL (on
        `origin`) the app sends it to instead; None when the app refuses it (or failed)."""
        if "sign_in" in self._hooks:
            ok, answer = yield from self._call("sign_in", (user, _tokens(data)), request.method, request.path)
            if not ok:
                return None
            if answer is not True:
                if isinstance(answer, str) and answer:
                    location = safe_redirect(answer, origin, "")
                    if location:
                        log.info("sign-in sent elsewhere by the app's sign_in hook")
                        return location
                    log.warning("the app's sign_in hook answered a URL off the app's origin: sign-in refused")
                elif answer is None:
                    log.warning("the app's sign_in hook answered None: sign-in refused (return True to let it go on)")
                else:
                    log.info("sign-in refused by the app's sign_in hook")
                return None
        return (yield from self._session_data(data, user, "sign_in", request.method, request.path))

    def _session_data(self, data: SessionData, user: LogtoUser, trigger: str,
                      method: str, path: str) -> Flow[SessionData | None]:
        """`data` with the fields `session_data` answers; None when it failed (reported)."""
        if "session_data" not in self._hooks:
            return data
        # A copy: the session's own fields may be shared with other requests (decoded-cookie cache).
        fields = copy.deepcopy(dict(data.fields))
        ok, answer = yield from self._call("session_data", (fields, user, trigger, _tokens(data)), method, path)
        if not ok:
            return None
        try:
            return data.with_fields(self._checked_fields(answer))
        except (TypeError, ValueError, RecursionError) as exc:
            self._report(exc, method, path, "the app's session_data hook answered fields the session cannot keep")
            return None

    def _checked_fields(self, answer: Any) -> dict[str, Any]:
        if not isinstance(answer, Mapping):
            raise TypeError(f"session_data must answer a mapping, not {type(answer).__name__}")
        fields = dict(answer)
        keys = [key for key in fields if not isinstance(key, str)]
        if keys:
            raise TypeError(f"session_data's keys must be strings, not {type(keys[0]).__name__}")
        reserved = sorted(TOKEN_MEMBERS.intersection(fields))
        if reserved:
            raise ValueError(f"session_data's fields may not be named {', '.join(reserved)}: "
                             "the session keeps those itself")
        size = len(_JSON.encode(fields).encode())  # TypeError or ValueError for what is not JSON
        if size > self._max_fields:
            raise ValueError(f"session_data answered {size} bytes of JSON, more than "
                             f"max_session_data ({self._max_fields})")
        # As it will read back: what the cookie or the store keeps is JSON.
        decoded: dict[str, Any] = json.loads(_JSON.encode(fields))
        return decoded

    def shape_session(self, body: dict[str, Any], user: LogtoUser, request: Request) -> Flow[dict[str, Any]]:
        """What `/session` answers: `body` as the app's `session` hook shapes it, or `body`
        itself when the hook failed (reported): never more than an app without the hook shows."""
        if "session" not in self._hooks:
            return body
        ok, answer = yield from self._call("session", (copy.deepcopy(body), user), request.method, request.path)
        if ok:
            try:
                if not isinstance(answer, Mapping):
                    raise TypeError(f"session must answer a mapping, not {type(answer).__name__}")
                shaped = dict(answer)
                _JSON.encode(shaped)  # what Response.json cannot encode would be a 500
                return shaped
            except (TypeError, ValueError, RecursionError) as exc:
                self._report(exc, request.method, request.path, "the app's session hook answered no JSON object")
        return body

    def signed_in(self, data: SessionData, request: Request) -> Flow[None]:
        if "signed_in" in self._hooks and (user := self.user(data, request)) is not None:
            yield from self._event("signed_in", (user,), request.method, request.path)

    def signed_out(self, data: SessionData, request: Request) -> Flow[None]:
        if "signed_out" in self._hooks and (user := self.user(data, request)) is not None:
            yield from self._event("signed_out", (user,), request.method, request.path)

    def session_ended_by_provider(self, sub: str | None, sid: str | None, count: int, request: Request) -> Flow[None]:
        yield from self._event("session_ended_by_provider", (sub, sid, count), request.method, request.path)

    # -- RefreshHooks: run once per grant of the session's own tokens --------------------------

    def refreshed(self, before: SessionData, after: SessionData) -> Flow[SessionData | None]:
        user = self._user(after, *_REFRESH)
        if user is None:
            return None
        return (yield from self._session_data(after, user, "refresh", *_REFRESH))

    def refresh_failed(self, data: SessionData, error: LogtoError) -> Flow[None]:
        if "refresh_failed" not in self._hooks or (user := self._user(data, *_REFRESH)) is None:
            return
        code = error.error if isinstance(error, OAuthError) else type(error).__name__
        # As `SessionManager` decides: a refused grant or a forged ID token ends the session.
        ended = isinstance(error, (OAuthError, TokenValidationError))
        yield from self._event("refresh_failed", (user, code, ended), *_REFRESH)


def _tokens(data: SessionData) -> Mapping[str, Any]:
    """What the hooks see of a session's tokens (never the refresh token)."""
    return MappingProxyType({"access_token": data.access_token, "id_token": data.id_token,
                             "expires_at": data.access_token_expires_at, "scope": data.scope})
