"""Flask: the `LogtoFlask` extension, `current_user` in templates, through Flask's test client."""

from __future__ import annotations

from typing import Any

import flask
import pytest
from conftest import SECRET, Clock
from flask.testing import FlaskClient

from logto_middleware import LogtoConfig, LogtoWSGIMiddleware
from logto_middleware.flask import LogtoFlask, current_user, login_required, requires_fresh_auth
from logto_middleware.testing import FakeLogto

ORIGIN = "http://localhost"  # Flask's test client's host
# Without the context processor `current_user` is undefined: the page is a 500, not "anonymous".
PAGE = ("{% if current_user.is_authenticated %}hello {{ current_user.name }}"
        "{% elif current_user is defined %}anonymous{% endif %}")


def make_app() -> flask.Flask:
    app = flask.Flask(__name__)

    @app.get("/")
    def home() -> str:
        return flask.render_template_string(PAGE)

    @app.get("/private")
    @login_required
    def private() -> str:
        return f"private for {current_user.id}"

    @app.get("/delete")
    @requires_fresh_auth(300)
    def delete() -> str:
        return f"deleted {current_user.id}"

    return app


def _config(fake: FakeLogto) -> LogtoConfig:
    return LogtoConfig(issuer=fake.issuer, client_id=fake.client_id, client_secret=fake.client_secret,
                       secret=SECRET, base_url=ORIGIN)


def _options(fake: FakeLogto, clock: Clock) -> dict[str, Any]:
    return {"http_client": fake.httpx_client(), "clock": clock}


def sign_in(client: FlaskClient, fake: FakeLogto, login: str = "alice") -> None:
    start = client.get("/api/auth/signin")
    assert start.status_code == 302, start.text
    callback = fake.authorize(start.headers["location"], login=login)
    assert callback.startswith(ORIGIN + "/api/auth/callback/logto?")
    done = client.get(callback.removeprefix(ORIGIN))
    assert done.status_code == 302 and "error" not in done.headers["location"], done.headers


def test_template_shows_the_signed_in_users_name(fake: FakeLogto, clock: Clock) -> None:
    app = make_app()
    LogtoFlask(app, _config(fake), **_options(fake, clock))
    client = app.test_client()
    sign_in(client, fake)
    page = client.get("/")
    assert page.status_code == 200
    assert page.text == f"hello {fake.user_claims('alice')['name']}"


def test_template_shows_the_anonymous_user(fake: FakeLogto, clock: Clock) -> None:
    app = make_app()
    LogtoFlask(app, _config(fake), **_options(fake, clock))
    page = app.test_client().get("/")
    assert (page.status_code, page.text) == (200, "anonymous")


def test_init_app_pattern(fake: FakeLogto, clock: Clock) -> None:
    logto = LogtoFlask(config=_config(fake), **_options(fake, clock))  # at import time, no app yet
    app = make_app()
    middleware = logto.init_app(app)
    assert isinstance(middleware, LogtoWSGIMiddleware) and app.extensions["logto"] is middleware
    client = app.test_client()
    anonymous = client.get("/private")  # the existing helpers work under the extension
    assert anonymous.status_code == 302 and "/api/auth/signin?callbackUrl=%2Fprivate" in anonymous.headers["location"]
    sign_in(client, fake)
    assert client.get("/private").text == f"private for {fake.user_claims('alice')['sub']}"
    assert client.get("/").text.startswith("hello ")
    with pytest.raises(RuntimeError, match="already installed"):
        logto.init_app(app)  # wrapping twice would serve the routes twice


def test_config_from_the_environment(fake: FakeLogto, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("AUTH_LOGTO_ISSUER", fake.issuer), ("AUTH_LOGTO_ID", fake.client_id),
                        ("AUTH_LOGTO_SECRET", fake.client_secret), ("AUTH_SECRET", SECRET), ("AUTH_URL", ORIGIN)):
        monkeypatch.setenv(name, value)
    app = make_app()
    middleware = LogtoFlask(**_options(fake, clock)).init_app(app)
    assert middleware.config.issuer == fake.issuer
    client = app.test_client()
    sign_in(client, fake)
    assert client.get("/").text.startswith("hello ")


def test_requires_fresh_auth(fake: FakeLogto, clock: Clock) -> None:
    app = make_app()
    LogtoFlask(app, _config(fake), **_options(fake, clock))
    client = app.test_client()
    anonymous = client.get("/delete", headers={"accept": "application/json"})
    assert anonymous.status_code == 401 and anonymous.json["error"] == "insufficient_user_authentication"
    sign_in(client, fake)
    sub = fake.user_claims("alice")["sub"]
    assert client.get("/delete").text == f"deleted {sub}"
    clock.advance(300 + 60 + 1)  # max_age and the clock skew
    page = client.get("/delete?confirm=1")
    assert page.status_code == 303
    assert page.headers["location"] == "/api/auth/signin?callbackUrl=%2Fdelete%3Fconfirm%3D1&max_age=300"
    api = client.get("/delete", headers={"accept": "application/json"})
    assert api.status_code == 401
    assert 'error="insufficient_user_authentication"' in api.headers["www-authenticate"]
    assert api.json["max_age"] == 300
    start = client.get(page.headers["location"])
    callback = fake.authorize(start.headers["location"], login="alice")
    back = client.get(callback.removeprefix(ORIGIN))
    assert back.headers["location"] == ORIGIN + "/delete?confirm=1"
    assert client.get("/delete?confirm=1").text == f"deleted {sub}"
