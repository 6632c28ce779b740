"""One session shared by an Express app with @auth/express and two Python APIs, end to end.

All three run on 127.0.0.1 (each on its own port: cookies are not port-scoped, so one browser
cookie jar carries the same `authjs.session-token` to each), against the real `oidc-provider`
interop OP. The Express app (express_app.mjs) uses Auth.js's Logto provider and the
refresh-token-rotation guide's jwt callback; it runs twice: stock (token.sub is the random user id
Auth.js v5 makes without an adapter) and with a jwt callback that keeps the provider's subject in
token.sub. The Starlette and Flask APIs are wrapped with LogtoASGIMiddleware / LogtoWSGIMiddleware,
session_format="authjs", the same AUTH_SECRET and client, and refresh LEEWAY seconds before expiry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import flask
import httpx
import pytest
import uvicorn
from conftest import SECRET
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from werkzeug.serving import BaseWSGIServer, make_server

from logto_middleware import LogtoASGIMiddleware, LogtoConfig, LogtoWSGIMiddleware
from logto_middleware.flask import current_session, current_user

from ..provider import OidcProviderProcess, ProviderUnavailable, free_loopback_port
from .nodejs import ExpressApp, NodeUnavailable, node_ready

ACCESS_TOKEN_TTL = 6  # seconds, at the provider
LEEWAY = 3  # our middleware refreshes LEEWAY s before expiry; the guide's callback only after it
SESSION = "authjs.session-token"


def user_view(user: Any, session: Any) -> dict[str, Any]:
    return {
        "authenticated": user.is_authenticated, "id": user.id, "name": user.name, "email": user.email,
        "access_token": getattr(session, "access_token", None),
        "access_token_expires_at": getattr(session, "access_token_expires_at", None),
        "error": getattr(session, "error", None),
    }


def starlette_api(config: LogtoConfig) -> LogtoASGIMiddleware:
    async def me(request: Request) -> JSONResponse:
        auth = request.auth
        return JSONResponse(user_view(request.user, auth if hasattr(auth, "access_token") else None))

    return LogtoASGIMiddleware(Starlette(routes=[Route("/me", me)]), config)


def flask_api(config: LogtoConfig) -> flask.Flask:
    app = flask.Flask("authjs-interop-flask")

    @app.get("/me")
    def me() -> Any:
        return flask.jsonify(user_view(current_user, current_session))

    app.wsgi_app = LogtoWSGIMiddleware(app.wsgi_app, config)  # type: ignore[method-assign]
    return app


class UvicornThread:
    def __init__(self, app: Any, port: int) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)


class WerkzeugThread:
    def __init__(self, app: Any, port: int) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@dataclass
class Stack:
    provider: OidcProviderProcess
    express: str  # stock: token.sub is Auth.js's random user id
    express_keeping_subject: str  # its jwt callback keeps the provider's subject in token.sub
    starlette: str
    flask: str

    def browser(self) -> httpx.Client:
        return httpx.Client(follow_redirects=False, timeout=15)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    try:
        node = node_ready()
    except NodeUnavailable as exc:
        pytest.skip(f"Auth.js interop needs Node.js: {exc}")
    ports = {name: free_loopback_port() for name in ("express", "express_keeping_subject", "starlette", "flask")}
    origins = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    provider = OidcProviderProcess()
    try:
        provider.start(redirect_uris=[f"{o}/api/auth/callback/logto" for o in origins.values()],
                       post_logout_redirect_uris=[f"{o}/" for o in origins.values()],
                       access_token_ttl=ACCESS_TOKEN_TTL)
    except ProviderUnavailable as exc:
        pytest.skip(f"interop provider unavailable: {exc}")
    stoppers: list[Callable[[], None]] = [provider.stop]
    try:
        env = {"AUTH_SECRET": SECRET, "AUTH_LOGTO_ISSUER": provider.issuer, "AUTH_LOGTO_ID": provider.client_id,
               "AUTH_LOGTO_SECRET": provider.client_secret}
        express = ExpressApp(node, ports["express"], env)
        stoppers.append(express.stop)
        keeping = ExpressApp(node, ports["express_keeping_subject"], {**env, "KEEP_PROVIDER_SUBJECT": "1"})
        stoppers.append(keeping.stop)

        def config(origin: str) -> LogtoConfig:
            return LogtoConfig(issuer=provider.issuer, client_id=provider.client_id,
                               client_secret=provider.client_secret, secret=SECRET, base_url=origin,
                               session_format="authjs", refresh_leeway=LEEWAY)

        starlette = UvicornThread(starlette_api(config(origins["starlette"])), ports["starlette"])
        stoppers.append(starlette.stop)
        flask_server = WerkzeugThread(flask_api(config(origins["flask"])), ports["flask"])
        stoppers.append(flask_server.stop)
        yield Stack(provider, express.url, keeping.url, origins["starlette"], origins["flask"])
    finally:
        for stop in reversed(stoppers):
            stop()


# -- steps ----------------------------------------------------------------------------------------


def sign_in_with_express(stack: Stack, browser: httpx.Client, express: str, username: str = "alice") -> None:
    csrf = browser.get(f"{express}/api/auth/csrf").json()["csrfToken"]
    start = browser.post(f"{express}/api/auth/signin/logto", data={"csrfToken": csrf, "callbackUrl": f"{express}/me"})
    assert start.status_code == 302, start.text
    assert start.headers["location"].startswith(stack.provider.issuer), start.headers["location"]
    callback = stack.provider.login(browser, start.headers["location"], username)
    assert callback.startswith(f"{express}/api/auth/callback/logto?"), callback
    done = browser.get(callback)
    assert done.status_code == 302 and done.headers["location"] == f"{express}/me", done.text
    assert browser.cookies.get(SESSION), "Express set no session cookie"


def sign_in_with_python(stack: Stack, browser: httpx.Client, origin: str, username: str = "alice") -> None:
    start = browser.get(f"{origin}/api/auth/signin")
    assert start.status_code == 302, start.text
    callback = stack.provider.login(browser, start.headers["location"], username)
    done = browser.get(callback)
    assert done.status_code == 302, done.text
    assert browser.cookies.get(SESSION), "the middleware set no session cookie"


def express_token(browser: httpx.Client, express: str) -> dict[str, Any] | None:
    """The session token the Express app's getToken() decodes from the browser's cookies."""
    body = browser.get(f"{express}/me").json()
    token: dict[str, Any] | None = body["token"]
    return token


def express_session(browser: httpx.Client, express: str) -> Any:
    """Auth.js's own /api/auth/session (runs the jwt and session callbacks)."""
    response = browser.get(f"{express}/api/auth/session")
    assert response.status_code == 200, response.text
    return response.json()


def python_me(browser: httpx.Client, origin: str) -> tuple[dict[str, Any], httpx.Response]:
    response = browser.get(f"{origin}/me")
    assert response.status_code == 200, response.text
    return response.json(), response


def writes_session(response: httpx.Response) -> bool:
    return any(h.startswith(SESSION) for h in response.headers.get_list("set-cookie"))


def grants(stack: Stack, kind: str) -> int:
    return int(stack.provider.stats()["grants"].get(kind, 0))


def wait_until(moment: float) -> None:
    delay = moment - time.time()
    if delay > 0:
        time.sleep(delay)


def assert_everyone_anonymous(stack: Stack, browser: httpx.Client) -> None:
    assert not browser.cookies.get(SESSION)
    for express in (stack.express, stack.express_keeping_subject):
        assert express_token(browser, express) is None
        assert not express_session(browser, express)
    for origin in (stack.starlette, stack.flask):
        assert python_me(browser, origin)[0]["authenticated"] is False, origin


def assert_python_apis_see(browser: httpx.Client, stack: Stack, token: dict[str, Any]) -> None:
    """Both Python APIs read the Auth.js cookie: the same user and tokens; nothing is refreshed or
    rewritten on the way."""
    for origin in (stack.starlette, stack.flask):
        seen, response = python_me(browser, origin)
        assert seen["authenticated"] is True, (origin, seen)
        assert (seen["id"], seen["name"], seen["email"]) == (token["sub"], "Alice", "alice@example.com"), origin
        assert seen["access_token"] == token["access_token"], origin
        assert seen["access_token_expires_at"] == token["expires_at"], origin
        assert not writes_session(response), origin


def sign_out_with_python(stack: Stack, browser: httpx.Client, origin: str) -> None:
    # A browser's form POST carries Origin; the middleware then needs no CSRF token.
    signout = browser.post(f"{origin}/api/auth/signout", headers={"origin": origin})
    assert signout.status_code == 302, signout.text
    assert signout.headers["location"].startswith(stack.provider.end_session_endpoint)
    assert stack.provider.logout(browser, signout.headers["location"]).startswith(f"{origin}/")


# -- tests ----------------------------------------------------------------------------------------


def test_express_session_is_seen_by_python_and_python_sign_out_ends_it(stack: Stack) -> None:
    stack.provider.reset_stats()
    browser = stack.browser()
    sign_in_with_express(stack, browser, stack.express)
    token = express_token(browser, stack.express)
    assert token is not None
    assert (token["name"], token["email"], token["picture"]) == (
        "Alice", "alice@example.com", "https://avatars.example.com/alice.png")
    assert token["access_token"] and token["refresh_token"] and isinstance(token["expires_at"], int)
    session = express_session(browser, stack.express)
    assert session["user"] == {"name": "Alice", "email": "alice@example.com",
                               "image": "https://avatars.example.com/alice.png"}
    assert_python_apis_see(browser, stack, token)

    sign_out_with_python(stack, browser, stack.starlette)
    assert_everyone_anonymous(stack, browser)
    stats = stack.provider.stats()
    assert stats["revocations"] == 1 and stats["end_session_success"] == 1
    assert stats["grants"]["refresh_token"] == 0


def test_express_sign_out_ends_the_python_session(stack: Stack) -> None:
    browser = stack.browser()
    sign_in_with_express(stack, browser, stack.express)
    token = express_token(browser, stack.express)
    assert token is not None
    assert_python_apis_see(browser, stack, token)

    csrf = browser.get(f"{stack.express}/api/auth/csrf").json()["csrfToken"]
    signout = browser.post(f"{stack.express}/api/auth/signout", data={"csrfToken": csrf})
    assert signout.status_code == 302, signout.text
    assert_everyone_anonymous(stack, browser)


@pytest.mark.parametrize("flavour", [
    pytest.param("express_keeping_subject", id="authjs-app-keeps-the-provider-subject"),
    # Stock Auth.js v5 (no adapter) puts a random UUID in token.sub: the refresh must keep it.
    pytest.param("express", id="stock-authjs"),
])
def test_python_refreshes_once_and_express_reads_the_new_tokens(stack: Stack, flavour: str) -> None:
    express = getattr(stack, flavour)
    stack.provider.reset_stats()
    express_refreshes = httpx.get(f"{express}/stats").json()["refreshes"]
    browser = stack.browser()
    sign_in_with_express(stack, browser, express)
    token = express_token(browser, express)
    assert token is not None
    first = dict(token)
    assert_python_apis_see(browser, stack, token)
    assert grants(stack, "refresh_token") == 0

    # Inside our leeway, before the guide's callback would refresh: the Starlette API refreshes once
    # and rewrites the Auth.js cookie.
    wait_until(first["expires_at"] - LEEWAY + 0.2)
    seen, response = python_me(browser, stack.starlette)
    assert seen["authenticated"] is True, seen
    assert seen["id"] == first["sub"] and seen["name"] == "Alice"
    assert seen["access_token"] != first["access_token"] and seen["error"] is None
    assert writes_session(response)
    assert grants(stack, "refresh_token") == 1

    # Express (getToken, and its own session endpoint) reads the new tokens from our cookie.
    token = express_token(browser, express)
    assert token is not None, "@auth/core's getToken could not read the cookie our middleware wrote"
    assert token["access_token"] == seen["access_token"]
    assert token["refresh_token"] and token["refresh_token"] != first["refresh_token"]
    assert token["expires_at"] == seen["access_token_expires_at"] and token["expires_at"] > time.time()
    assert (token["sub"], token["name"], token["email"]) == (first["sub"], "Alice", "alice@example.com")
    session = express_session(browser, express)
    assert session["user"]["name"] == "Alice" and not session.get("error"), session
    # ... and so does the Flask API; nobody refreshes again.
    assert_python_apis_see(browser, stack, express_token(browser, express) or {})
    assert grants(stack, "refresh_token") == 1
    assert httpx.get(f"{express}/stats").json()["refreshes"] == express_refreshes

    sign_out_with_python(stack, browser, stack.flask)
    assert_everyone_anonymous(stack, browser)


def test_python_sign_in_is_read_by_express_whose_refresh_python_reads(stack: Stack) -> None:
    """The other direction: the middleware signs in and writes the cookie; Auth.js reads it, and once
    the guide's callback has refreshed, the Python APIs read Express's new tokens."""
    stack.provider.reset_stats()
    express_refreshes = httpx.get(f"{stack.express}/stats").json()["refreshes"]
    browser = stack.browser()
    sign_in_with_python(stack, browser, stack.flask)
    token = express_token(browser, stack.express)
    assert token is not None, "@auth/core's getToken could not read the cookie our middleware wrote"
    assert (token["sub"], token["name"], token["email"]) == ("alice", "Alice", "alice@example.com")
    assert token["access_token"] and token["refresh_token"] and token["id_token"]
    assert_python_apis_see(browser, stack, token)
    session = express_session(browser, stack.express)
    assert session["user"] == {"name": "Alice", "email": "alice@example.com",
                               "image": "https://avatars.example.com/alice.png"}

    # Past expiry, Auth.js's session endpoint runs the guide's refresh and rewrites the cookie.
    wait_until(token["expires_at"] + 0.2)
    session = express_session(browser, stack.express)
    assert session["user"]["name"] == "Alice" and not session.get("error"), session
    counters = httpx.get(f"{stack.express}/stats").json()
    assert counters["refreshes"] == express_refreshes + 1 and counters["refreshErrors"] == 0
    refreshed = express_token(browser, stack.express)
    assert refreshed is not None and refreshed["access_token"] != token["access_token"]
    assert refreshed["refresh_token"] != token["refresh_token"]
    assert_python_apis_see(browser, stack, refreshed)
    assert grants(stack, "refresh_token") == 1

    csrf = browser.get(f"{stack.express}/api/auth/csrf").json()["csrfToken"]
    assert browser.post(f"{stack.express}/api/auth/signout", data={"csrfToken": csrf}).status_code == 302
    assert_everyone_anonymous(stack, browser)
