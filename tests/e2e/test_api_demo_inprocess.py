"""`/api-demo` and the example API of both examples, built in-process with `create_app` against
the package's `FakeLogto` (no processes): the configuration, the page's resource token and API
call, the organization switcher (the oidc-provider of tests/interop has no organizations), and
the failures the page must explain instead of crashing."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from logto_middleware import LogtoConfig
from logto_middleware.testing import FakeLogto, make_session_cookie

from .harness import KINDS
from .test_examples_inprocess import ENV, load_common, load_example

ORIGIN = "http://localhost:3000"
RESOURCE = "https://api.example.local"
SCOPES = "openid offline_access profile email custom_data identities urn:logto:scope:organizations read:items"
ORGANIZATIONS = {"alice": ["org-acme", "org-globex"]}
JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")


class App:
    """One example app in-process, signing in with a FakeLogto; `/api-demo` reaches the example
    API through the app itself (an httpx transport instead of a socket)."""

    def __init__(self, kind: str, fake: FakeLogto, **env: str) -> None:
        self.fake = fake
        settings = {"AUTH_LOGTO_ISSUER": fake.issuer, "AUTH_LOGTO_ID": fake.client_id,
                    "AUTH_LOGTO_SECRET": fake.client_secret, "AUTH_SECRET": ENV["AUTH_SECRET"], **env}
        self.config: LogtoConfig = load_common().load_config(settings)
        module = load_example(kind)
        app: Any = None

        if kind == "starlette":
            async def itself(scope: Any, receive: Any, send: Any) -> None:
                await app(scope, receive, send)

            api_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=itself))
            app = module.create_app(self.config, api_url=ORIGIN, http_client=fake.async_httpx_client(),
                                    api_client=api_client)
            self.client: httpx.Client = TestClient(app, base_url=ORIGIN, follow_redirects=False)
        else:
            def itself_wsgi(environ: Any, start_response: Any) -> Any:
                return app(environ, start_response)

            sync_client = httpx.Client(transport=httpx.WSGITransport(app=itself_wsgi))
            app = module.create_app(self.config, api_url=ORIGIN, http_client=fake.httpx_client(),
                                    api_client=sync_client)
            self.client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url=ORIGIN,
                                       follow_redirects=False)

    def sign_in(self, login: str, callback: str = "/api-demo") -> dict[str, list[str]]:
        """Sign in as `login`; returns the query of the authorization request."""
        start = self.client.get("/api/auth/signin", params={"callbackUrl": callback})
        assert start.status_code == 302, start.text
        location = start.headers["location"]
        landed = self.client.get(self.fake.authorize(location, login=login))
        assert landed.status_code == 302 and landed.headers["location"] == ORIGIN + callback, landed.text
        return parse_qs(urlsplit(location).query)

    def page(self, path: str = "/api-demo") -> str:
        response = self.client.get(path)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        assert not JWT.search(response.text), "a token reached the page"
        return response.text


def element(page: str, element_id: str) -> str:
    """The text inside the element with `element_id` (unescaped), or "" when there is none."""
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</(?:pre|span|table|p|select)>', page, re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", match.group(1))) if match else ""


def claims_table(page: str, table_id: str) -> dict[str, str]:
    match = re.search(rf'<table id="{table_id}">(.*?)</table>', page, re.S)
    assert match, f"no table {table_id}"
    rows = re.findall(r"<tr><td><code>(.*?)</code></td><td>(.*?)</td></tr>", match.group(1), re.S)
    return {html.unescape(name): html.unescape(value) for name, value in rows}


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fake() -> FakeLogto:
    return FakeLogto(issuer="http://127.0.0.1:3001/oidc", resources={RESOURCE: ["read:items", "write:items"]},
                     organizations=ORGANIZATIONS)


@pytest.fixture
def app(kind: str, fake: FakeLogto) -> Iterator[App]:
    running = App(kind, fake, AUTH_LOGTO_RESOURCES=RESOURCE, AUTH_LOGTO_SCOPES=SCOPES)
    try:
        yield running
    finally:
        running.client.close()


def test_configuration_of_the_example_api(monkeypatch: pytest.MonkeyPatch) -> None:
    common = load_common()
    plain = common.load_config(ENV)
    assert common.example_api(plain, {}) is None
    assert plain.resources == ()

    # A resource alone asks for the example API's scope on top of the default scopes.
    config = common.load_config({**ENV, "AUTH_LOGTO_RESOURCES": f"{RESOURCE}, https://other.example"})
    assert config.resources == (RESOURCE, "https://other.example")
    assert config.scope_list == ("openid", "offline_access", "profile", "email", "read:items")
    api = common.example_api(config, {})
    assert (api.resource, api.items_url, api.leeway) == (RESOURCE, "http://127.0.0.1:3000/example-api/items", 60)

    # EXAMPLE_API_RESOURCE picks the API's resource and is requested at sign-in too.
    config = common.load_config({**ENV, "AUTH_LOGTO_RESOURCES": "https://other.example",
                                 "EXAMPLE_API_RESOURCE": RESOURCE, "AUTH_LOGTO_SCOPES": "openid,email  read:items"})
    assert config.resources == ("https://other.example", RESOURCE)
    assert config.scope_list == ("openid", "email", "read:items")
    env = {"EXAMPLE_API_RESOURCE": RESOURCE, "HOST": "0.0.0.0", "PORT": "8080", "EXAMPLE_API_LEEWAY": "0"}
    api = common.example_api(config, env)
    assert (api.resource, api.base_url, api.leeway) == (RESOURCE, "http://127.0.0.1:8080", 0)
    api = common.example_api(config, {**env, "EXAMPLE_API_URL": "https://internal.example:8443/"})
    assert api.items_url == "https://internal.example:8443/example-api/items"
    assert common.example_api(config, {"HOST": "::"}).base_url == "http://[::1]:3000"
    with pytest.raises(ValueError, match="EXAMPLE_API_LEEWAY"):
        common.example_api(config, {"EXAMPLE_API_LEEWAY": "soon"})


def test_without_an_api_resource_the_page_says_how_to_turn_it_on(kind: str) -> None:
    config = LogtoConfig.from_env(ENV)
    module = load_example(kind)
    app: Any = module.create_app(config)
    client: httpx.Client
    if kind == "starlette":
        client = TestClient(app, base_url=ORIGIN, follow_redirects=False)
    else:
        client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url=ORIGIN)
    with client:
        anonymous = client.get("/api-demo?organization=x")
        assert anonymous.status_code == 302
        location = urlsplit(anonymous.headers["location"])
        assert location.path == "/api/auth/signin"
        assert parse_qs(location.query) == {"callbackUrl": ["/api-demo?organization=x"]}
        assert client.get("/example-api/items").status_code == 404  # no API without a resource

        cookie = make_session_cookie(config, {"sub": "bob", "name": "Bob"})
        page = client.get("/api-demo", headers={"Cookie": cookie})
        assert page.status_code == 200
        assert "AUTH_LOGTO_RESOURCES" in element(page.text, "api-off")
        assert 'id="api-status"' not in page.text and 'id="organization"' not in page.text
        assert '<a href="/api-demo">API demo</a>' in client.get("/").text


def test_api_demo_calls_the_example_api_and_switches_organizations(app: App, fake: FakeLogto) -> None:
    query = app.sign_in("alice")
    assert query["resource"] == [RESOURCE]
    assert "read:items" in query["scope"][0].split()

    page = app.page()
    assert element(page, "api-status") == "200"
    answer = json.loads(element(page, "api-response"))
    sub = fake.user_claims("alice")["sub"]
    assert [item["name"] for item in answer["items"]] == ["Notebook", "Fountain pen", "Ink, blue"]
    assert answer["caller"] == {"sub": sub, "client_id": fake.client_id, "scopes": ["read:items"],
                                "organization_id": None}
    claims = claims_table(page, "token-claims")
    assert (claims["aud"], claims["iss"], claims["sub"], claims["scope"]) == (RESOURCE, fake.issuer, sub, "read:items")
    assert claims["exp"].endswith("Z)")  # times are shown readable too
    assert 'name="organization"' in page
    assert re.findall(r'<option value="([^"]+)"', page) == ORGANIZATIONS["alice"]
    assert 'id="organization-claims"' not in page  # nothing chosen yet
    userinfo = claims_table(page, "userinfo")
    assert json.loads(userinfo["organizations"]) == ORGANIZATIONS["alice"]
    assert userinfo["custom_data"] == "{}"

    grants = fake.counts["token:refresh_token"]
    assert element(app.page(), "api-status") == "200"
    assert fake.counts["token:refresh_token"] == grants  # the resource token is kept in the session

    for organization in ORGANIZATIONS["alice"]:
        page = app.page(f"/api-demo?organization={organization}")
        assert f'<option value="{organization}" selected>' in page
        org_claims = claims_table(page, "organization-claims")
        assert org_claims["aud"] == f"urn:logto:organization:{organization}"
        assert org_claims["sub"] == sub
        assert element(page, "api-status") == "200"  # the API call is unaffected

    stranger = app.page("/api-demo?organization=%3Cscript%3Ealert(1)%3C/script%3E")
    assert "not a member" in element(stranger, "organization-error")
    assert "<script>alert" not in stranger and 'id="organization-claims"' not in stranger


def test_api_demo_shows_the_api_refusing_a_token_without_the_scope(app: App, fake: FakeLogto) -> None:
    fake.grantable_scopes = {"alice": ["write:items"]}  # like a Logto role without read:items
    app.sign_in("alice")
    page = app.page()
    assert element(page, "api-status") == "403"
    assert json.loads(element(page, "api-response"))["error"] == "insufficient_scope"
    assert claims_table(page, "token-claims")["aud"] == RESOURCE


def test_api_demo_for_a_user_without_organizations(app: App) -> None:
    app.sign_in("bob")
    page = app.page("/api-demo?organization=org-acme")
    assert "not a member of any organization" in element(page, "no-organizations")
    assert 'id="organization-claims"' not in page
    assert element(page, "api-status") == "200"


def test_api_demo_explains_a_resource_that_was_not_granted(kind: str, fake: FakeLogto) -> None:
    # Without offline_access there is no refresh token, so no token for an API resource.
    app = App(kind, fake, EXAMPLE_API_RESOURCE=RESOURCE, AUTH_LOGTO_SCOPES="openid profile email")
    assert app.sign_in("alice")["resource"] == [RESOURCE]
    page = app.page()
    assert "refresh token" in element(page, "token-error")  # no offline_access: no refresh token
    assert 'id="api-status"' not in page
    assert "Sign in again" in page
