"""One app, two credentials: the session middleware given a `BearerValidator` serves a page's
cookie session and an API's access tokens, the user says which (`user.source`); and the two
middlewares stacked, in either order, agree with it: a bearer token decides the request it
comes with (a bad one is a 401, never the cookie's user), any other request is the session's."""

from __future__ import annotations

import json
from typing import Any

import flask
import httpx
import pytest
from conftest import ORIGIN, Clock, Harness
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from logto_middleware import (
    AccessTokenError,
    AnonymousUser,
    BearerASGIMiddleware,
    BearerValidator,
    BearerWSGIMiddleware,
    LogtoConfig,
    Session,
)
from logto_middleware.flask import LogtoFlask, current_user, get_access_token, login_required
from logto_middleware.testing import FakeLogto

API = "https://api.example.com"
ALICE = "alice"


def access_token(fake: FakeLogto, clock: Clock, **overrides: Any) -> str:
    now = int(clock())
    claims = {"iss": fake.issuer, "sub": "machine-1", "aud": API, "exp": now + 3600, "iat": now, "jti": "j1",
              "client_id": "m2m-client", "scope": "read:items", **overrides}
    return fake.sign_id_token({k: v for k, v in claims.items() if v is not None}, headers={"typ": "at+jwt"})


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def _asgi_whoami(request: Request) -> JSONResponse:
    user, auth = request.user, request.auth
    try:
        token = await auth.get_access_token()
    except AccessTokenError:
        token = "AccessTokenError"  # the documented answer without a session, never AttributeError
    return JSONResponse({"source": user.source, "id": user.identity, "authenticated": user.is_authenticated,
                         "scopes": list(auth.scopes), "session": isinstance(auth, Session), "token": token,
                         "base_path": request.scope.get("logto.base_path")})


def asgi_app() -> Starlette:
    return Starlette(routes=[Route("/{path:path}", _asgi_whoami)])


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    user, session = environ.get("logto.user", AnonymousUser()), environ.get("logto.session")
    body = {"source": user.source, "id": user.identity, "authenticated": user.is_authenticated,
            "session": session is not None, "base_path": environ.get("logto.base_path")}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


@pytest.fixture
def validator(fake: FakeLogto, clock: Clock) -> BearerValidator:
    return BearerValidator(fake.issuer, API, http_client=fake.httpx_client(),
                           async_http_client=fake.async_httpx_client(), clock=clock)


@pytest.fixture
def combined(make_harness: Any, validator: BearerValidator) -> Harness:
    harness: Harness = make_harness(bearer=validator, asgi_app=asgi_app(), wsgi_app=wsgi_app)
    return harness


def subject(fake: FakeLogto, login: str) -> str:
    return str(fake.user_claims(login)["sub"])


def test_each_source_says_what_it_is(combined: Harness, fake: FakeLogto, clock: Clock) -> None:
    api = combined.browser().get("/items", headers=bearer(access_token(fake, clock)))
    assert api.status_code == 200, api.text
    body = api.json()
    assert (body["source"], body["id"], body["authenticated"], body["session"]) == ("bearer", "machine-1", True, False)
    if combined.kind == "asgi":
        assert body["scopes"] == ["authenticated", "read:items"]
        assert body["token"] == "AccessTokenError"
    combined.sign_in(ALICE)
    page = combined.client.get("/").json()
    assert (page["source"], page["id"], page["session"]) == ("session", subject(fake, ALICE), True)
    anonymous = combined.browser().get("/").json()
    assert anonymous["source"] is None and anonymous["authenticated"] is False


def test_the_header_wins_over_the_cookie(combined: Harness, fake: FakeLogto, clock: Clock) -> None:
    combined.sign_in(ALICE)
    both = combined.client.get("/items", headers=bearer(access_token(fake, clock)))
    assert both.status_code == 200
    assert (both.json()["source"], both.json()["id"], both.json()["session"]) == ("bearer", "machine-1", False)
    assert both.headers.get_list("set-cookie") == []  # the cookie was not even read
    # Another scheme is not a bearer token: the cookie's user.
    basic = combined.client.get("/", headers={"authorization": "Basic dXNlcjpwYXNz"}).json()
    assert basic["source"] == "session"
    assert combined.client.get("/").json()["source"] == "session"


@pytest.mark.parametrize("bad", ["expired", "wrong audience", "wrong issuer", "tampered", "not a jwt", "empty",
                                 "id token"])
def test_a_bad_token_beside_a_good_cookie_is_401(combined: Harness, fake: FakeLogto, clock: Clock, bad: str) -> None:
    combined.sign_in(ALICE)
    value = {
        "expired": lambda: access_token(fake, clock, exp=int(clock()) - 120),
        "wrong audience": lambda: access_token(fake, clock, aud="https://other.example.com"),
        "wrong issuer": lambda: access_token(fake, clock, iss="https://evil.example/oidc"),
        "tampered": lambda: access_token(fake, clock)[:-6] + "AAAAAA",
        "not a jwt": lambda: "not-a-jwt",
        "empty": lambda: "",
        "id token": lambda: fake.sign_id_token({"iss": fake.issuer, "sub": "x", "aud": API, "iat": int(clock()),
                                                "exp": int(clock()) + 60}),
    }[bad]()
    refused = combined.client.get("/items", headers={"authorization": f"Bearer {value}"})
    assert refused.status_code == 401, refused.text
    assert refused.headers["www-authenticate"].startswith('Bearer realm="api"')
    assert refused.headers["cache-control"] == "no-store"
    assert refused.json()["error"] in ("invalid_token", "unauthorized")
    assert refused.headers.get_list("set-cookie") == []  # the session is not touched, nor lost
    assert combined.client.get("/").json()["source"] == "session"


def test_an_expired_token_is_refused_though_it_was_verified_before(combined: Harness, fake: FakeLogto,
                                                                  clock: Clock) -> None:
    value = access_token(fake, clock, exp=int(clock()) + 600)
    for _ in range(3):
        assert combined.client.get("/items", headers=bearer(value)).json()["source"] == "bearer"
    assert fake.counts["jwks"] == 1  # the validator's cached keys and verified tokens
    clock.advance(600 + 120)  # past the validator's leeway
    refused = combined.client.get("/items", headers=bearer(value))
    assert refused.status_code == 401 and "expired" in refused.json()["error_description"]


def test_bearer_only_paths_never_read_the_cookie(make_harness: Any, validator: BearerValidator, fake: FakeLogto,
                                                 clock: Clock) -> None:
    harness: Harness = make_harness(bearer=validator, bearer_only=["/api/"], asgi_app=asgi_app(), wsgi_app=wsgi_app)
    harness.sign_in(ALICE)
    # An API path: the cookie (which any site's form or script can make the browser send) is
    # no credential there; a token is.
    assert harness.client.get("/api/items").json()["authenticated"] is False
    assert harness.client.get("/api").json()["authenticated"] is False
    assert harness.client.get("/api/items", headers=bearer(access_token(fake, clock))).json()["source"] == "bearer"
    # Elsewhere (a whole segment: /apis is not /api) and our own routes: the session.
    assert harness.client.get("/apis").json()["source"] == "session"
    assert harness.client.get("/").json()["source"] == "session"
    assert harness.client.get("/api/auth/session").json()["user"]["id"] == subject(fake, ALICE)


def test_bearer_only_needs_a_validator(make_harness: Any) -> None:
    with pytest.raises(ValueError, match="bearer_only"):
        make_harness(bearer_only=["/api"])


def stacked(harness: Harness, validator: BearerValidator, order: str) -> Harness:
    """`harness` whose session middleware is stacked with the bearer middleware: inside it
    (`session-outside`, the harness was made around the bearer middleware) or around it."""
    if order == "bearer-outside":
        outer: Any
        if harness.kind == "asgi":
            outer = BearerASGIMiddleware(harness.middleware, validator)
            harness.client = TestClient(outer, base_url=ORIGIN, follow_redirects=False)
        else:
            outer = BearerWSGIMiddleware(harness.middleware, validator)
            harness.client = httpx.Client(transport=httpx.WSGITransport(app=outer), base_url=ORIGIN,
                                          follow_redirects=False)
    return harness


@pytest.mark.parametrize("order", ["session-outside", "bearer-outside"])
def test_stacked_middlewares_do_not_clobber_each_other(make_harness: Any, validator: BearerValidator,
                                                       fake: FakeLogto, clock: Clock, order: str) -> None:
    inner_asgi: Any = asgi_app()
    inner_wsgi: Any = wsgi_app
    if order == "session-outside":
        inner_asgi = BearerASGIMiddleware(inner_asgi, validator)
        inner_wsgi = BearerWSGIMiddleware(inner_wsgi, validator)
    harness = stacked(make_harness(asgi_app=inner_asgi, wsgi_app=inner_wsgi), validator, order)
    client = harness.client
    assert client.get("/").json()["authenticated"] is False
    token_only = client.get("/items", headers=bearer(access_token(fake, clock))).json()
    assert (token_only["source"], token_only["session"]) == ("bearer", False)
    harness.sign_in(ALICE)
    cookie = client.get("/").json()
    assert (cookie["source"], cookie["id"], cookie["session"]) == ("session", subject(fake, ALICE), True)
    both = client.get("/items", headers=bearer(access_token(fake, clock))).json()
    assert (both["source"], both["id"], both["session"]) == ("bearer", "machine-1", False)
    assert both["base_path"] == cookie["base_path"] == "/api/auth"  # where the guards send a person to sign in
    if harness.kind == "asgi":
        assert both["token"] == "AccessTokenError" and both["scopes"] == ["authenticated", "read:items"]
    bad = client.get("/items", headers=bearer(access_token(fake, clock, aud="https://other.example.com")))
    assert bad.status_code == 401 and bad.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/").json()["source"] == "session"


def test_a_websocket_with_a_token(fake: FakeLogto, clock: Clock, validator: BearerValidator) -> None:
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"source": websocket.user.source, "id": websocket.user.identity})
        await websocket.close()

    harness = Harness("asgi", fake, clock, bearer=validator, asgi_app=Starlette(routes=[WebSocketRoute("/ws", ws)]))
    client = TestClient(harness.middleware)
    with client.websocket_connect("/ws", headers=bearer(access_token(fake, clock))) as socket:
        assert socket.receive_json() == {"source": "bearer", "id": "machine-1"}
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/ws", headers=bearer("not-a-jwt")):
        pass
    assert refused.value.code == 1008


def test_an_authjs_session_sent_as_a_bearer_token_stays_a_session(make_harness: Any, validator: BearerValidator,
                                                                  fake: FakeLogto, clock: Clock) -> None:
    from logto_middleware._sessions.authjs import AuthJsCookieStore

    harness: Harness = make_harness(bearer=validator, session_format="authjs", asgi_app=asgi_app(),
                                    wsgi_app=wsgi_app)
    jwe = AuthJsCookieStore(harness.config.secrets, clock=clock).encode(
        {"sub": "u1", "name": "Ada", "access_token": "at", "expires_at": int(clock()) + 3600}, "authjs.session-token")
    assert harness.client.get("/", headers=bearer(jwe)).json()["source"] == "session"  # like Auth.js's getToken()
    assert harness.client.get("/", headers=bearer(access_token(fake, clock))).json()["source"] == "bearer"


def test_flask_helpers_with_either_source(fake: FakeLogto, clock: Clock, validator: BearerValidator) -> None:
    app = flask.Flask(__name__)

    @app.get("/me")
    @login_required
    def me() -> Any:
        try:
            token = get_access_token()
        except AccessTokenError:
            token = "AccessTokenError"
        return {"source": current_user.source, "id": current_user.id, "token": token}

    config = LogtoConfig(issuer=fake.issuer, client_id=fake.client_id, client_secret=fake.client_secret,
                         secret="test-secret-0123456789-abcdefghijklmnop")
    LogtoFlask(app, config, bearer=validator, http_client=fake.httpx_client(), clock=clock)
    client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url=ORIGIN)
    answer = client.get("/me", headers=bearer(access_token(fake, clock)))
    assert answer.json() == {"source": "bearer", "id": "machine-1", "token": "AccessTokenError"}
    assert client.get("/me", headers={"accept": "application/json"}).status_code == 401
