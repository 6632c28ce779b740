"""Apps served under a path prefix: Starlette's `Mount`, a server's `--root-path` (ASGI
`root_path`), werkzeug's `DispatcherMiddleware` and any WSGI `SCRIPT_NAME`, and `AUTH_URL` with
a path. Each deployment signs in against FakeLogto with the prefix in every URL it sees."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import flask
import httpx
import pytest
from conftest import ORIGIN, SECRET, Clock, asgi_echo_app, wsgi_echo_app
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from logto_middleware import LogtoASGIMiddleware, LogtoConfig, LogtoConfigError, LogtoWSGIMiddleware
from logto_middleware.flask import current_user, login_required
from logto_middleware.testing import FakeLogto

PREFIX = "/app"
AUTH = ORIGIN + "/app/api/auth"
CALLBACK = AUTH + "/callback/logto"
HOME = ORIGIN + "/app/"
ASGIApp = Callable[..., Any]
WSGIApp = Callable[..., Any]


def _config(fake: FakeLogto, **settings: Any) -> LogtoConfig:
    return LogtoConfig(issuer=fake.issuer, client_id=fake.client_id, client_secret=fake.client_secret,
                       secret=SECRET, **settings)


def _asgi(app: ASGIApp, fake: FakeLogto, clock: Clock, **settings: Any) -> LogtoASGIMiddleware:
    return LogtoASGIMiddleware(app, _config(fake, **settings), http_client=fake.async_httpx_client(), clock=clock)


def _wsgi(app: WSGIApp, fake: FakeLogto, clock: Clock, **settings: Any) -> LogtoWSGIMiddleware:
    return LogtoWSGIMiddleware(app, _config(fake, **settings), http_client=fake.httpx_client(), clock=clock)


def _asgi_client(app: ASGIApp) -> httpx.Client:
    return TestClient(app, base_url=ORIGIN, follow_redirects=False)


def _wsgi_client(app: WSGIApp) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url=ORIGIN, follow_redirects=False)


def _root_path_server(app: ASGIApp, *, path_includes_root: bool) -> ASGIApp:
    """A server run with `--root-path /app` behind a proxy: `root_path` is set, and `path`
    holds the prefix (the ASGI spec, uvicorn >= 0.26) or not (older servers)."""

    async def server(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            path = scope["path"]
            assert path.startswith(PREFIX)
            scope = {**scope, "root_path": PREFIX, "path": path if path_includes_root else path[len(PREFIX):] or "/"}
        await app(scope, receive, send)

    return server


def _script_name_server(app: WSGIApp) -> WSGIApp:
    """A WSGI server mounting the app at /app (as gunicorn does with SCRIPT_NAME set)."""

    def server(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ["PATH_INFO"]
        assert path.startswith(PREFIX)
        return app({**environ, "SCRIPT_NAME": PREFIX, "PATH_INFO": path[len(PREFIX):] or "/"}, start_response)

    return server


def _flask_app(fake: FakeLogto, clock: Clock, **settings: Any) -> flask.Flask:
    app = flask.Flask(__name__)

    @app.get("/")
    def home() -> Any:
        return flask.jsonify(authenticated=current_user.is_authenticated, id=current_user.id)

    @app.get("/private")
    @login_required
    def private() -> Any:
        return flask.jsonify(id=current_user.id)

    app.wsgi_app = _wsgi(app.wsgi_app, fake, clock, **settings)  # type: ignore[method-assign]
    return app


def _not_found(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


# When the routes' path comes from AUTH_URL and the app serves the full paths itself (a proxy
# that keeps the prefix), the app's own pages are configured with theirs.
_FULL_PATHS = {"base_url": AUTH, "post_login_redirect": "/app/", "post_logout_redirect": "/app/"}

DEPLOYMENTS: dict[str, Callable[[FakeLogto, Clock], httpx.Client]] = {
    "asgi-starlette-mount": lambda fake, clock: _asgi_client(
        Starlette(routes=[Mount(PREFIX, app=_asgi(asgi_echo_app(), fake, clock))])),
    "asgi-root-path-in-path": lambda fake, clock: _asgi_client(
        _root_path_server(_asgi(asgi_echo_app(), fake, clock), path_includes_root=True)),
    "asgi-root-path-not-in-path": lambda fake, clock: _asgi_client(
        _root_path_server(_asgi(asgi_echo_app(), fake, clock), path_includes_root=False)),
    "asgi-auth-url-path": lambda fake, clock: _asgi_client(_asgi(asgi_echo_app(), fake, clock, **_FULL_PATHS)),
    "asgi-mount-and-auth-url-path": lambda fake, clock: _asgi_client(
        Starlette(routes=[Mount(PREFIX, app=_asgi(asgi_echo_app(), fake, clock, base_url=AUTH))])),
    "wsgi-flask-dispatcher": lambda fake, clock: _wsgi_client(
        DispatcherMiddleware(_not_found, {PREFIX: _flask_app(fake, clock)})),
    "wsgi-script-name": lambda fake, clock: _wsgi_client(_script_name_server(_wsgi(wsgi_echo_app, fake, clock))),
    "wsgi-auth-url-path": lambda fake, clock: _wsgi_client(_wsgi(wsgi_echo_app, fake, clock, **_FULL_PATHS)),
    # AUTH_URL as an Auth.js app has it (`/api/auth`), the app mounted under /app: within the app.
    "wsgi-dispatcher-and-auth-url-api-auth": lambda fake, clock: _wsgi_client(
        DispatcherMiddleware(_not_found, {PREFIX: _flask_app(fake, clock, base_url=ORIGIN + "/api/auth")})),
}


@pytest.fixture
def fake(clock: Clock) -> FakeLogto:
    # As Logto's console would have them registered: only the prefixed URIs are accepted.
    return FakeLogto(clock=clock, redirect_uris=[CALLBACK], post_logout_redirect_uris=[HOME])


@pytest.fixture(params=sorted(DEPLOYMENTS))
def site(request: pytest.FixtureRequest, fake: FakeLogto, clock: Clock) -> httpx.Client:
    return DEPLOYMENTS[request.param](fake, clock)


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_sign_in_and_out_under_a_prefix(site: httpx.Client, fake: FakeLogto) -> None:
    assert site.get("/app/").json()["authenticated"] is False
    start = site.get("/app/api/auth/signin")
    assert start.status_code == 302, start.text
    assert _query(start.headers["location"])["redirect_uri"] == [CALLBACK]
    # The cookies stay on Path=/ (`__Host-` names require it on https): see docs/deployment.md.
    assert all("; Path=/;" in cookie for cookie in start.headers.get_list("set-cookie"))

    callback = fake.authorize(start.headers["location"], login="alice")
    assert callback.startswith(CALLBACK + "?")
    done = site.get(callback)
    assert done.status_code == 302, done.text
    assert done.headers["location"] == HOME
    me = site.get("/app/").json()
    assert me["authenticated"] is True and me["id"]

    providers = site.get("/app/api/auth/providers").json()["logto"]
    assert (providers["signinUrl"], providers["callbackUrl"]) == (AUTH + "/signin/logto", CALLBACK)
    assert f'action="{AUTH}/signout"' in site.get("/app/api/auth/signout").text

    out = site.post("/app/api/auth/signout", headers={"origin": ORIGIN})
    assert out.status_code == 302, out.text
    assert _query(out.headers["location"])["post_logout_redirect_uri"] == [HOME]
    assert site.get("/app/").json()["authenticated"] is False


def test_error_pages_under_a_prefix(site: httpx.Client) -> None:
    start = site.get("/app/api/auth/signin")
    state = _query(start.headers["location"])["state"][0]
    error = site.get("/app/api/auth/callback/logto", params={"error": "access_denied", "state": state})
    assert error.headers["location"] == AUTH + "/error?error=AccessDenied"
    page = site.get(error.headers["location"])
    assert page.status_code == 403
    assert f'href="{HOME}"' in page.text


def test_flask_login_required_under_dispatcher_comes_back_to_the_page(fake: FakeLogto, clock: Clock) -> None:
    site = DEPLOYMENTS["wsgi-flask-dispatcher"](fake, clock)
    anonymous = site.get("/app/private")
    assert anonymous.status_code == 302
    signin = anonymous.headers["location"]
    assert urlsplit(signin).path == "/app/api/auth/signin"
    assert _query(signin)["callbackUrl"] == ["/app/private"]
    start = site.get(signin)
    done = site.get(fake.authorize(start.headers["location"], login="alice"))
    assert done.headers["location"] == ORIGIN + "/app/private"
    assert site.get("/app/private").json()["id"]


# -- configuration -----------------------------------------------------------------------------

ENV = {"AUTH_LOGTO_ISSUER": "https://tenant.logto.app/oidc", "AUTH_LOGTO_ID": "id", "AUTH_LOGTO_SECRET": "s",
       "AUTH_SECRET": SECRET}


def test_auth_url_path_sets_the_base_path() -> None:
    config = LogtoConfig.from_env({**ENV, "AUTH_URL": "https://Example.com/app/api/auth/"})
    assert (config.base_url, config.base_path, config.base_path_from_url) == (
        "https://example.com", "/app/api/auth", True)
    # A copy keeps where its routes are.
    assert config.replace(prompt=None).base_path == "/app/api/auth"
    origin_only = LogtoConfig.from_env({**ENV, "AUTH_URL": "https://example.com/"})
    assert (origin_only.base_path, origin_only.base_path_from_url) == ("/api/auth", False)


def test_auth_url_path_conflicting_with_base_path_is_refused() -> None:
    with pytest.raises(LogtoConfigError, match=r"base_path.*AUTH_URL"):
        LogtoConfig.from_env({**ENV, "AUTH_URL": "https://example.com/app/api/auth"}, base_path="/auth")
    same = LogtoConfig.from_env({**ENV, "AUTH_URL": "https://example.com/app/api/auth"}, base_path="/app/api/auth/")
    assert same.base_path == "/app/api/auth"


@pytest.mark.parametrize("url", ["https://example.com/app?x=1", "https://example.com/app/a%20b"])
def test_auth_url_with_a_query_or_odd_path_is_refused(url: str) -> None:
    with pytest.raises(LogtoConfigError, match="AUTH_URL"):
        LogtoConfig.from_env({**ENV, "AUTH_URL": url})


# -- a prefix that is no path -------------------------------------------------------------------

def _with_prefix(kind: str, prefix: str, fake: FakeLogto, clock: Clock) -> httpx.Client:
    """An app whose server (or a proxy fix trusting a request header) sets the prefix to `prefix`,
    whatever the request's path."""
    if kind == "asgi":
        app = _asgi(asgi_echo_app(), fake, clock)

        async def server(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await app({**scope, "root_path": prefix}, receive, send)
        return _asgi_client(server)
    wsgi_app = _wsgi(wsgi_echo_app, fake, clock)
    latin1 = prefix.encode().decode("latin-1").rstrip("/")  # PEP 3333: bytes as latin-1

    def server(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ["PATH_INFO"].removeprefix(prefix.rstrip("/"))  # httpx's PATH_INFO is not latin-1
        return wsgi_app({**environ, "SCRIPT_NAME": latin1, "PATH_INFO": path}, start_response)
    return _wsgi_client(server)


@pytest.mark.parametrize(("prefix", "callback"), [
    ("@evil.example", ORIGIN + "/api/auth/callback/logto"),  # would make the host evil.example
    ("/caf\u00e9 bar/", ORIGIN + "/caf%C3%A9%20bar/api/auth/callback/logto"),  # percent-encoded, no 500
])
def test_the_prefix_never_leaves_the_origin(kind: str, prefix: str, callback: str, clock: Clock) -> None:
    fake = FakeLogto(clock=clock)
    site = _with_prefix(kind, prefix, fake, clock)
    start = site.get("/api/auth/signin")
    assert start.status_code == 302, start.text
    assert _query(start.headers["location"])["redirect_uri"] == [callback]
    done = site.get(fake.authorize(start.headers["location"], login="alice"))
    assert done.status_code == 302 and done.headers["location"].startswith(ORIGIN + "/"), done.headers
