"""The example apps built in-process with `create_app(config)`: configuration, and pages that
escape what the provider sends (no provider needed: `make_session_cookie` signs in)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from logto_middleware import LogtoConfig, LogtoConfigError
from logto_middleware.testing import make_session_cookie

from .harness import KINDS
from .worker_apps import load_example

ENV = {
    "AUTH_LOGTO_ISSUER": "https://tenant.logto.app/oidc",
    "AUTH_LOGTO_ID": "example-app",
    "AUTH_LOGTO_SECRET": "example-secret",
    "AUTH_SECRET": "in-process-secret-0123456789-abcdefghij",
}
HOSTILE = {
    "sub": "mallory",
    "name": "<script>alert('name')</script>",
    "email": "mallory@example.com\"><img src=x onerror=alert(1)>",
    "picture": "javascript:alert('picture')",
    "custom": "</td><script>alert('claim')</script>",
}


def load_common() -> ModuleType:
    load_example("starlette")  # puts examples/ on sys.path
    return sys.modules["common"]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No AUTH_* variables, and a current directory without .env; .env loading undone after."""
    for name in (*ENV, "AUTH_URL", "AUTH_TRUST_HOST", "AUTH_REFRESH_LEEWAY", "AUTH_SECRET_1"):
        # set, then delete: the undo then removes whatever a test's .env put there
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.fixture
def config() -> LogtoConfig:
    return LogtoConfig.from_env(ENV)


@pytest.fixture(params=KINDS)
def client(request: pytest.FixtureRequest, config: LogtoConfig) -> Iterator[httpx.Client]:
    app: Any = load_example(str(request.param)).create_app(config)
    if request.param == "starlette":
        with TestClient(app, base_url="http://localhost:3000", follow_redirects=False) as test_client:
            yield test_client
    else:
        transport = httpx.WSGITransport(app=app)
        with httpx.Client(transport=transport, base_url="http://localhost:3000") as wsgi_client:
            yield wsgi_client


@pytest.mark.parametrize("kind", KINDS)
def test_importing_needs_no_configuration_but_app_does(kind: str, clean_env: pytest.MonkeyPatch) -> None:
    module = load_example(kind)
    clean_env.delitem(vars(module), "app", raising=False)
    assert callable(module.create_app)
    with pytest.raises(LogtoConfigError, match="AUTH_LOGTO_ISSUER"):
        _ = module.app


@pytest.mark.parametrize("kind", KINDS)
def test_module_app_reads_environment_and_dotenv(kind: str, clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = load_example(kind)
    clean_env.delitem(vars(module), "app", raising=False)
    (tmp_path / ".env").write_text("".join(f"{name}={value}\n" for name, value in ENV.items())
                                   + "AUTH_LOGTO_ID=from-dotenv\n")
    clean_env.setenv("AUTH_LOGTO_ID", "from-environment")
    app = module.app
    assert module.app is app  # built once
    middleware = app.wsgi_app if kind == "flask" else app.build_middleware_stack().app
    assert middleware.config.client_id == "from-environment"  # the environment wins over .env
    assert middleware.config.issuer == ENV["AUTH_LOGTO_ISSUER"]
    clean_env.delitem(vars(module), "app")


def test_load_config_refresh_leeway(clean_env: pytest.MonkeyPatch) -> None:
    common = load_common()
    assert common.load_config(ENV).refresh_leeway == 60
    assert common.load_config({**ENV, "AUTH_REFRESH_LEEWAY": "5"}).refresh_leeway == 5
    with pytest.raises(ValueError, match="AUTH_REFRESH_LEEWAY"):
        common.load_config({**ENV, "AUTH_REFRESH_LEEWAY": "soon"})


def test_listen_address_and_public_url() -> None:
    common = load_common()
    assert common.listen_address({}) == ("127.0.0.1", 3000)
    assert common.listen_address({"HOST": "0.0.0.0", "PORT": "8080"}) == ("0.0.0.0", 8080)
    with pytest.raises(ValueError, match="PORT"):
        common.listen_address({"PORT": "http"})
    assert common.public_url("127.0.0.1", 3000) == "http://localhost:3000"
    assert common.public_url("0.0.0.0", 80) == "http://localhost:80"
    assert common.public_url("192.168.1.5", 3000) == "http://192.168.1.5:3000"


def test_protected_page_comes_back_with_its_query(client: httpx.Client) -> None:
    response = client.get("/profile?tab=claims")
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert location.path == "/api/auth/signin"
    assert parse_qs(location.query) == {"callbackUrl": ["/profile?tab=claims"]}


def test_pages_escape_what_the_provider_sends(client: httpx.Client, config: LogtoConfig) -> None:
    cookie = make_session_cookie(config, HOSTILE)
    for path in ("/", "/profile"):
        page = client.get(path, headers={"Cookie": cookie})
        assert page.status_code == 200, page.text
        assert "&lt;script&gt;alert(&#x27;name&#x27;)&lt;/script&gt;" in page.text
        assert "<script>alert" not in page.text
        assert "<img src=x" not in page.text
        assert '="javascript:' not in page.text  # an unsafe picture URL is shown as text at most
        assert page.text.count("<script>") == 1  # only the page's own session-status script
    profile = client.get("/profile", headers={"Cookie": cookie}).text
    assert "&lt;/td&gt;&lt;script&gt;alert(&#x27;claim&#x27;)&lt;/script&gt;" in profile


def test_api_me_never_shows_tokens(client: httpx.Client, config: LogtoConfig) -> None:
    cookie = make_session_cookie(config, {"sub": "bob", "name": "Bob"}, access_token="at-must-stay-secret",
                                 refresh_token="rt-must-stay-secret")
    response = client.get("/api/me", headers={"Cookie": cookie})
    assert response.status_code == 200
    body = response.json()
    assert body["user"]["id"] == "bob" and body["user"]["name"] == "Bob"
    assert body["has_access_token"] is True
    assert body["expires"].endswith("Z") and body["access_token_expires"].endswith("Z")
    assert response.headers["cache-control"] == "no-store"
    profile = client.get("/profile", headers={"Cookie": cookie})
    for text in (response.text, profile.text):
        assert "at-must-stay-secret" not in text and "rt-must-stay-secret" not in text

    no_token = make_session_cookie(config, {"sub": "bob"}, access_token=None)
    assert client.get("/api/me", headers={"Cookie": no_token}).json()["has_access_token"] is False


def test_fastapi_pages_link_under_the_root_path(config: LogtoConfig) -> None:
    """The FastAPI example behind `uvicorn --root-path /app`: links and the sign-in redirect carry
    the prefix (Starlette and Flask: tests/e2e/test_prefix_oidc.py, under their real servers)."""
    app: Any = load_example("fastapi").create_app(config)
    with TestClient(app, base_url="http://localhost:3000", root_path="/app", follow_redirects=False) as client:
        page = client.get("/app/").text
        assert 'data-auth-base="/app/api/auth"' in page and 'href="/app/profile"' in page
        assert 'href="/app/api/auth/signin?callbackUrl=%2Fapp%2F"' in page
        protected = client.get("/app/profile", headers={"Accept": "text/html"})  # a page, not an API
    assert protected.status_code == 303, protected.text
    location = urlsplit(protected.headers["location"])
    assert location.path == "/app/api/auth/signin"
    assert parse_qs(location.query) == {"callbackUrl": ["/app/profile"]}


def test_devices_page(client: httpx.Client, config: LogtoConfig) -> None:
    anonymous = client.get("/devices")
    assert anonymous.status_code == 302
    assert parse_qs(urlsplit(anonymous.headers["location"]).query) == {"callbackUrl": ["/devices"]}
    page = client.get("/devices", headers={"Cookie": make_session_cookie(config, HOSTILE)})
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    assert 'data-auth-base="/api/auth"' in page.text
    for text in ('id="device-list"', ">Sign out everywhere else<", 'action="/api/auth/signout"',
                 'href="/devices"'):
        assert text in page.text
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    # Its script builds the rows from text only, and calls the routes under the page's base.
    for text in ('base + "/sessions"', 'base + "/sessions/end"', 'base + "/csrf"', '"x-csrf-token"'):
        assert text in page.text
    assert "innerHTML" not in page.text


def test_devices_page_under_a_prefix_calls_the_prefixed_routes() -> None:
    common = load_common()
    page = common.devices_page(common.LogtoUser({"sub": "u", "name": "<b>U</b>"}), "Test", "/app/")
    assert 'data-auth-base="/app/api/auth"' in page and "<b>U</b>" not in page
    assert common.auth_base("") == "/api/auth"
    assert common.auth_base('/a"b') == '/a"b/api/auth'  # the page escapes it
    assert 'data-auth-base="/a&quot;b/api/auth"' in common.devices_page(common.LogtoUser({"sub": "u"}), "T", '/a"b')
