"""`LogtoHooks`: the app's say in sign-in and sessions, with the semantics of Auth.js's
`callbacks` (`signIn`, `jwt`, `session`) and `events`.

Subclass it, override the methods you need and pass an instance as `LogtoConfig(hooks=...)`.
Each method may be a plain method, or `async def` under the ASGI middleware (the WSGI one
refuses a coroutine method when it starts: it has no event loop to run it on). They run in the
request that triggers them, so keep them quick.

The app's code runs under the fail-closed rule: an exception in `sign_in` or `session_data`
refuses the sign-in (the `AccessDenied` error page, no session written) or, on a refresh, ends
the session; an exception in `session` answers the unshaped `/session` (what it answers without
a hook); an event's exception is logged and ignored. Each failure is logged with its traceback
(once per raise site, see `FailureLog`); tokens are never logged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # session.py imports config.py, which imports this module
    from .session import LogtoUser

__all__ = ["HOOK_NAMES", "LogtoHooks", "overridden_hooks"]

HOOK_NAMES = ("sign_in", "session_data", "session", "signed_in", "signed_out", "session_ended_by_provider",
              "refresh_failed")


class LogtoHooks:
    """Callbacks and events of the sign-in, as Auth.js's. Override what you need.

    `tokens` (for `sign_in` and `session_data`) is a mapping of the provider's answer:
    `access_token`, `id_token`, `expires_at` (seconds since the epoch, or None) and `scope`
    (never the refresh token, which the middleware keeps to itself).
    """

    max_session_data: int = 2048
    """The largest `session_data` the session keeps, in bytes of compact JSON: it travels in the
    cookie (split into chunks beyond 4 kB) or the server store on every request. Larger is
    refused as the hook's failure (the sign-in ends on `AccessDenied`; a refresh ends the
    session)."""

    # -- callbacks ----------------------------------------------------------------------------

    def sign_in(self, user: LogtoUser, tokens: Mapping[str, Any]) -> bool | str:
        """Whether `user` may sign in (Auth.js `callbacks.signIn`): True goes on; False (or
        anything else that is not a string) refuses, and the sign-in ends on the error page
        with `AccessDenied`; a URL (a path or a URL of the app's origin) ends it there
        instead, with no session. An off-site URL is refused as False is."""
        return True

    def session_data(self, fields: dict[str, Any], user: LogtoUser, trigger: str,
                     tokens: Mapping[str, Any]) -> Mapping[str, Any]:
        """The app's fields of the session (Auth.js `callbacks.jwt`): called at sign-in
        (`trigger` "sign_in", `fields` empty) and after each refresh of the session's tokens
        (`trigger` "refresh", `fields` the current ones); the answer replaces them. Keys are
        strings, values JSON; they are on `request.user.fields` and the session's `fields`,
        and not in `/session` unless `session` puts them there. The names of the Auth.js
        cookie's own members (`sub`, `name`, `email`, `picture`, `exp`, the tokens...) are
        refused: with `session_format="authjs"` the fields are the Auth.js token's members."""
        return fields

    def session(self, session: dict[str, Any], user: LogtoUser) -> Mapping[str, Any]:
        """What `GET <base_path>/session` answers for a signed-in user (Auth.js
        `callbacks.session`): `session` is the default answer (`user` with `id`, `name`,
        `email` and `image`, and `expires`); `user.fields` holds the session's fields."""
        return session

    # -- events: their answer is ignored, their exceptions logged ---------------------------

    def signed_in(self, user: LogtoUser) -> None:
        """A session was made for `user` (Auth.js `events.signIn`)."""

    def signed_out(self, user: LogtoUser) -> None:
        """`user` signed out (Auth.js `events.signOut`)."""

    def session_ended_by_provider(self, sub: str | None, sid: str | None, count: int) -> None:
        """A back-channel logout from the provider ended `count` sessions of the user `sub`
        or of the provider's session `sid` (a logout token names one or both)."""

    def refresh_failed(self, user: LogtoUser, error: str, session_ended: bool) -> None:
        """A refresh of `user`'s tokens failed: `error` is the provider's OAuth error code
        (`invalid_grant`) or the failure's kind (`ProviderUnavailable`); `session_ended` says
        whether the session ended (refused grant) or is kept for a retry (outage)."""


def overridden_hooks(hooks: LogtoHooks) -> dict[str, Callable[..., Any]]:
    """The hooks `hooks` overrides, by name, as bound methods (the others need not be called)."""
    return {name: getattr(hooks, name) for name in HOOK_NAMES
            if getattr(type(hooks), name) is not getattr(LogtoHooks, name)}
