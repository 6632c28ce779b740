"""Flask helpers for `LogtoWSGIMiddleware`: `current_user`, `login_required`, `get_access_token`,
and the `LogtoFlask` extension that installs the middleware and puts `current_user` in templates.

Importing this module needs Flask; the rest of the package does not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import flask
from werkzeug.local import LocalProxy

from ._protocol.freshness import require_max_age
from .bearer import AccessTokenUser
from .config import LogtoConfig
from .errors import AccessTokenError
from .helpers import fresh_auth_refusal, signin_url
from .session import AnonymousUser, LogtoUser, SyncSession
from .wsgi import LogtoWSGIMiddleware

__all__ = ["LogtoFlask", "current_session", "current_user", "get_access_token", "get_session", "login_required",
           "requires_fresh_auth", "template_context"]

F = TypeVar("F", bound=Callable[..., Any])
_ANONYMOUS = AnonymousUser()


def _user() -> LogtoUser | AccessTokenUser | AnonymousUser:
    return cast("LogtoUser | AccessTokenUser | AnonymousUser", flask.request.environ.get("logto.user", _ANONYMOUS))


def get_session() -> SyncSession | None:
    """The session of the current request, or None when anonymous."""
    return cast("SyncSession | None", flask.request.environ.get("logto.session"))


current_user: LogtoUser | AccessTokenUser | AnonymousUser = LocalProxy(_user)  # type: ignore[assignment]
"""The signed-in user of the current request (an `AnonymousUser` when there is none; an
`AccessTokenUser` for a bearer token, given `bearer=` or `BearerWSGIMiddleware`: `.source`)."""

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
        if _wants_json():
            return flask.jsonify(error="unauthorized"), 401
        base_path = flask.request.environ.get("logto.base_path", "/api/auth")  # on the site, prefix included
        here = flask.request.script_root + flask.request.full_path.rstrip("?")
        return flask.redirect(signin_url(here, base_path=base_path))

    return cast(F, wrapper)


def requires_fresh_auth(max_age: int) -> Callable[[F], F]:
    """A view decorator: the user must have signed in at Logto at most `max_age` seconds ago
    (the configured clock skew allowed). Otherwise a page goes to sign in again (`max_age` is
    sent to Logto, which asks for credentials) and comes back; a JSON request (as for
    `login_required`) gets 401 with `WWW-Authenticate: Cookie error="insufficient_user_authentication",
    max_age="..."` (RFC 9470).

        @app.post("/account/delete")
        @requires_fresh_auth(300)
        def delete_account(): ...
    """
    require_max_age(max_age)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            request = flask.request
            refusal = fresh_auth_refusal(
                get_session(), max_age, here=request.script_root + request.full_path.rstrip("?"),
                base_path=request.environ.get("logto.base_path", "/api/auth"), page=not _wants_json())
            if refusal is None:
                return view(*args, **kwargs)
            body = flask.json.dumps(refusal.body) if refusal.body is not None else ""
            return flask.Response(body, refusal.status, refusal.headers,
                                  mimetype="application/json" if refusal.body is not None else None)

        return cast(F, wrapper)

    return decorator


def _wants_json() -> bool:
    return flask.request.accept_mimetypes.best == "application/json" or flask.request.is_json


def get_access_token(resource: str | None = None, organization_id: str | None = None) -> str:
    """A valid access token for the current user (the session's own, or for an API resource or
    organization); raises `AccessTokenError` when there is none."""
    session = get_session()
    if session is None:
        raise AccessTokenError("not signed in")
    return session.get_access_token(resource, organization_id)


def template_context() -> dict[str, Any]:
    """A Flask context processor: `current_user` in every template. `LogtoFlask` registers it;
    with a hand-wrapped `wsgi_app`, register it yourself: `app.context_processor(template_context)`."""
    return {"current_user": current_user}


class LogtoFlask:
    """The Flask extension: `LogtoFlask(app)`, or `logto = LogtoFlask()` then `logto.init_app(app)`.

    Wraps `app.wsgi_app` with `LogtoWSGIMiddleware` (with `config`, else `LogtoConfig.from_env()`
    read when `init_app` runs; the keyword arguments go to the middleware) and makes `current_user`
    available in templates."""

    def __init__(self, app: flask.Flask | None = None, config: LogtoConfig | None = None,
                 **middleware_options: Any) -> None:
        self.config = config
        self._options = middleware_options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> LogtoWSGIMiddleware:
        """Install the middleware on `app` (once) and register `template_context`; returns the
        middleware (also `app.extensions["logto"]`)."""
        if "logto" in app.extensions:
            raise RuntimeError("LogtoFlask is already installed on this app")
        middleware = LogtoWSGIMiddleware(app.wsgi_app, self.config, **self._options)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.context_processor(template_context)
        app.extensions["logto"] = middleware
        return middleware
