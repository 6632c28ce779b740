"""`DjangoSession`: the Logto session on a Django request, in both of Django's worlds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ..flow import Flow
from ..session import LogtoUser, ProfileMapper, Session, SessionData, SessionTokens

__all__ = ["DjangoSession"]


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class DjangoSession(Session):
    """`request.logto_session`. One Django project serves sync and async views under WSGI and
    ASGI alike, so the token methods work in both: called from an async view (a running event
    loop) they return an awaitable, else the value. The `a`-prefixed twins (`aget_access_token`,
    Django's naming) are always awaitable."""

    __slots__ = ("_arun", "_run")

    def __init__(self, data: SessionData, profile: ProfileMapper | None, tokens: SessionTokens,
                 run: Callable[[Flow[Any]], Any], arun: Callable[[Flow[Any]], Awaitable[Any]],
                 user: LogtoUser | None = None) -> None:
        Session.__init__(self, data, profile, tokens, user)
        self._run, self._arun = run, arun

    def _call(self, flow: Flow[Any], convert: Callable[[Any], Any]) -> Any:
        if _in_event_loop():
            return self._acall(flow, convert)
        return convert(self._run(flow))

    async def _acall(self, flow: Flow[Any], convert: Callable[[Any], Any]) -> Any:
        return convert(await self._arun(flow))

    def get_access_token(self, resource: str | None = None, organization_id: str | None = None) -> Any:
        """A valid access token (the session's own, or for an API resource or organization),
        refreshed when needed; raises `AccessTokenError`. Await it in an async view."""
        return self._call(self._bound().access_token(resource, organization_id), str)

    def get_access_token_claims(self, resource: str | None = None) -> Any:
        """The claims of the access token for `resource`, decoded without verification."""
        return self._call(self._bound().token_claims(resource), dict)

    def get_organization_token_claims(self, organization_id: str) -> Any:
        """The claims of the organization token, decoded without verification."""
        return self._call(self._bound().token_claims(None, organization_id), dict)

    def fetch_user_info(self) -> Any:
        """The userinfo endpoint's claims (custom_data, identities... when granted)."""
        return self._call(self._bound().user_info(), dict)

    async def aget_access_token(self, resource: str | None = None, organization_id: str | None = None) -> str:
        return str(await self._arun(self._bound().access_token(resource, organization_id)))

    async def aget_access_token_claims(self, resource: str | None = None) -> dict[str, Any]:
        return dict(await self._arun(self._bound().token_claims(resource)))

    async def afetch_user_info(self) -> dict[str, Any]:
        return dict(await self._arun(self._bound().user_info()))
