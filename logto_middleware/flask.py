"""Flask helpers for `LogtoWSGIMiddleware`: `current_user`, `login_required`, `get_access_token`.

Importing this module needs Flask; the rest of the package does not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import flask
from werkzeug.local import LocalProxy

from .errors import AccessTokenError
from .helpers import signin_url
from .session import AnonymousUser, LogtoUser, SyncSession

__all__ = ["current_session", "current_user", "get_access_token", "get_session", "login_required"]

F = TypeVar("F", bound=Callable[..., Any])
_ANONYMOUS = AnonymousUser()


def _user() -> LogtoUser | AnonymousUser:
    return cast("LogtoUser | AnonymousUser", flask.request.environ.get("logto.user", _ANONYMOUS))


def get_session() -> SyncSession | None:
    """The session of the current request, or None when anonymous."""
    return cast("SyncSession | None", flask.request.environ.get("logto.session"))


current_user: LogtoUser | AnonymousUser = LocalProxy(_user)  # type: ignore[assignment]
"""The signed-in user of the current request (an `AnonymousUser` when there is none)."""

current_session: LocalProxy[SyncSession | None] = LocalProxy(get_session)
"""A proxy to the current request's session: test it for truth (`if current_session:`), not
with `is None` (a proxy is never None); or call `get_session()`."""


def login_required(view: F) -> F:
    """Pages: anonymous visitors go to sign-in and come back. `Accept: application/json`
    requests get a 401 JSON body instead of a redirect."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _user().is_authenticated:
            return view(*args, **kwargs)
        if flask.request.accept_mimetypes.best == "application/json" or flask.request.is_json:
            return flask.jsonify(error="unauthorized"), 401
        base_path = flask.request.environ.get("logto.base_path", "/api/auth")  # on the site, prefix included
        here = flask.request.script_root + flask.request.full_path.rstrip("?")
        return flask.redirect(signin_url(here, base_path=base_path))

    return cast(F, wrapper)


def get_access_token(resource: str | None = None, organization_id: str | None = None) -> str:
    """A valid access token for the current user (the session's own, or for an API resource or
    organization); raises `AccessTokenError` when there is none."""
    session = get_session()
    if session is None:
        raise AccessTokenError("not signed in")
    return session.get_access_token(resource, organization_id)
