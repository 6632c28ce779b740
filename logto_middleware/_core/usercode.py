"""The app's own code that the middleware calls (the profile mapper), run under the fail-closed
rule: when it raises, the request goes on anonymous and the session it could not map is
cleared, or the sign-in ends on the error page; never a 500, never a session that keeps failing."""

from __future__ import annotations

from collections.abc import Callable

from .._messages import Request
from .._sessions.state import SessionState
from ..config import LogtoConfig
from ..session import LogtoUser, SessionData

__all__ = ["UserCode"]

# Reports an unexpected exception (rate-limited, see `FailureLog`): exception, method, path, whose.
Report = Callable[[BaseException, str, str, str], None]


class UserCode:
    """Calls the app's profile mapper for the middleware, and contains what it raises."""

    def __init__(self, config: LogtoConfig, report: Report) -> None:
        self._profile = config.profile
        self._report = report

    def user(self, data: SessionData, request: Request) -> LogtoUser | None:
        """The user of a session, mapped by the profile mapper; None when the mapper failed
        (reported)."""
        try:
            return data.user(self._profile)
        except Exception as exc:  # the app's code: any exception is its bug, not ours to raise
            self._report(exc, request.method, request.path, "the app's profile mapper raised")
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
