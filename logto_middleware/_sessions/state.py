"""A request's session state, and the access tokens it gets on demand for the signed-in user:
the session's own, API resources', organizations', and the userinfo call. One implementation,
run by the ASGI or the WSGI driver."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .._protocol.freshness import auth_time_of, is_recent
from .._protocol.oauth import MAX_TOKEN_RESPONSE
from .._protocol.provider import ProviderCache, read_json
from .._protocol.refresh import Refresher, Target
from .._protocol.tokens import decode_unverified
from ..errors import (
    AccessTokenError,
    LogtoError,
    ProviderError,
    ProviderUnavailable,
    StoreUnavailable,
    TokenValidationError,
)
from ..flow import Fetch, Flow
from ..session import SessionData

if TYPE_CHECKING:
    import httpx  # imported by `user_info`, the one request built here (see flow.py)

__all__ = ["REFRESH_DEFERRED", "SessionState", "SessionTokens"]

REFRESH_DEFERRED = "RefreshDeferred"
"""`session.error` when the tokens were due for a refresh that the request could not write back
(an Auth.js session sent as a bearer token, a websocket, a response already started): the
current token is served while it lasts, and the next request with the cookie refreshes."""

log = logging.getLogger("logto_middleware")


class SessionOwner(Protocol):
    """What a session state needs of the `SessionManager` that made it (a protocol: the manager
    imports this module, not the other way round)."""

    refresher: Refresher
    provider: ProviderCache
    clock: Callable[[], float]
    leeway: int  # the clock skew allowed (`LogtoConfig.clock_skew`)

    @property
    def server_side(self) -> bool:
        """Whether sessions live in a server-side store (which keeps a refresh's tokens itself)."""
        ...

    def refresh_tokens(self, state: SessionState, data: SessionData,
                       target: Target | None = None) -> Flow[SessionData | None]: ...


@dataclass(slots=True)
class SessionState:
    """A request's session as read, and what must be written back. It is also what the
    request's `Session` gets tokens through (its `SessionTokens`): a refresh made on demand lands
    here, and the middleware writes it back on the app's response."""

    owner: SessionOwner = field(repr=False)
    cookie_name: str
    secure: bool
    cookie_value: str | None = None
    present: tuple[str, ...] = ()  # the names of the cookie and its chunks in the request
    data: SessionData | None = None
    # False when nothing can be written back: the session came in an Authorization header, the
    # request is a websocket, or the response has started.
    writable: bool = True
    dirty: bool = False  # the data changed: store it
    rolled: bool = False  # the expiry moved: send the cookie again
    cleared: bool = False

    @property
    def may_refresh(self) -> bool:
        """Whether a refresh may run: its rotated refresh token must be kept, in the server-side
        store or in the cookie of a response still to start. Spent and not kept, it would revoke
        the whole grant when the next request presents the old one."""
        return self.writable or self.owner.server_side

    def access_token(self, resource: str | None = None, organization_id: str | None = None) -> Flow[str]:
        """A valid access token: the session's own, or one for an API resource or organization."""
        data = self.data
        if data is None:
            raise AccessTokenError("not signed in")
        target = None if resource is None and organization_id is None else Target(resource, organization_id)
        if target is not None and data.refresh_token is None:
            raise AccessTokenError("the session has no refresh token: sign in with offline_access and prompt=consent")
        owner = self.owner
        now = owner.clock()
        if owner.refresher.needs_refresh(data, now, target):
            if not self.may_refresh:
                # Serve the current token while it lasts, and say why it was not refreshed.
                self.data = data = data.with_changes(error=REFRESH_DEFERRED)
                if not _unexpired(data, now, target):
                    raise AccessTokenError("the access token needs a refresh that this request cannot write "
                                           "back (a bearer session, a websocket or a response already started)")
            else:
                try:
                    refreshed = yield from owner.refresh_tokens(self, data, target)
                except LogtoError as exc:
                    error = getattr(exc, "error", None) or type(exc).__name__
                    log.info("access token for %s refused: %s", target.audience if target else "the session", error)
                    transient = isinstance(exc, ProviderUnavailable | StoreUnavailable)
                    raise AccessTokenError(f"could not get an access token: {error}", transient=transient) from None
                if refreshed is None:
                    raise AccessTokenError("the session ended")
                data = refreshed
        if target is None:
            if data.access_token is None:
                raise AccessTokenError("the session has no access token")
            return data.access_token
        token = data.resource_token(target.slot)
        if token is None:
            raise AccessTokenError(f"no access token was granted for {target.audience}")
        return token[0]

    def authenticated_within(self, seconds: int) -> bool:
        """Whether the session's sign-in (its `auth_time`) is at most `seconds` old."""
        data = self.data
        owner = self.owner
        return data is not None and is_recent(auth_time_of(data.claims), seconds, now=owner.clock(),
                                               leeway=owner.leeway)

    def token_claims(self, resource: str | None = None, organization_id: str | None = None) -> Flow[dict[str, Any]]:
        """The claims of a JWT access token, decoded *without* verification: for display only."""
        token = yield from self.access_token(resource, organization_id)
        try:
            return decode_unverified(token)[1]
        except TokenValidationError:
            raise AccessTokenError("the access token is opaque, not a JWT (request it for an API resource)") from None

    def user_info(self) -> Flow[dict[str, Any]]:
        """The userinfo endpoint's claims for the signed-in user (refreshing the token first)."""
        token = yield from self.access_token()
        metadata = yield from self.owner.provider.metadata()
        if metadata.userinfo_endpoint is None:
            raise ProviderError("the provider has no userinfo endpoint")
        import httpx

        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        response: httpx.Response = yield Fetch(httpx.Request("GET", metadata.userinfo_endpoint, headers=headers),
                                               MAX_TOKEN_RESPONSE)
        if response.status_code in (401, 403):
            raise AccessTokenError("the provider refused the access token at userinfo")
        body = read_json(response, "userinfo")
        if response.status_code != 200 or not isinstance(body, dict):
            raise ProviderError(f"userinfo answered {response.status_code}")
        if body.get("sub") != (self.data.claims.get("sub") if self.data is not None else None):
            raise ProviderError("userinfo answered for another subject")
        return body


SessionTokens = SessionState
"""What a `Session` gets its tokens through: the state of its request (it implements the
`logto_middleware.session.SessionTokens` protocol)."""


def _unexpired(data: SessionData, now: float, target: Target | None) -> bool:
    """Whether the token (the session's own, or `target`'s) exists and has not expired yet."""
    if target is None:
        expires_at = data.access_token_expires_at
        return data.access_token is not None and (expires_at is None or expires_at > now)
    token = data.resource_token(target.slot)
    return token is not None and token[1] > now


