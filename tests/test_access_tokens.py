"""Access tokens for API resources and organizations, and userinfo, on ASGI and WSGI alike."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import Clock, Harness
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from logto_middleware import AccessTokenError
from logto_middleware.testing import FakeLogto

API = "https://api.example.com"
ORG_SCOPE = "urn:logto:scope:organizations"
SCOPES = f"openid offline_access profile email read:items custom_data identities {ORG_SCOPE}"


def call(session: Any, op: str, params: dict[str, str]) -> Any:
    """The session method for `op`, with the query's arguments."""
    if op == "token":
        return session.get_access_token(params.get("resource"), params.get("org"))
    if op == "claims":
        return session.get_access_token_claims(params.get("resource"))
    if op == "org-claims":
        return session.get_organization_token_claims(params["org"])
    return session.fetch_user_info()


async def asgi_endpoint(request: Request) -> JSONResponse:
    params = dict(request.query_params)
    if not request.user.is_authenticated:
        return JSONResponse({"error": "anonymous"}, 401)
    try:
        return JSONResponse({"result": await call(request.auth, request.path_params["op"], params)})
    except AccessTokenError as exc:
        return JSONResponse({"error": str(exc)}, 403)


def wsgi_endpoint(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    params = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    session = environ["logto.session"]
    status, body = "200 OK", {}
    if session is None:
        status, body = "401 Unauthorized", {"error": "anonymous"}
    else:
        try:
            body = {"result": call(session, environ["PATH_INFO"].rsplit("/", 1)[-1], params)}
        except AccessTokenError as exc:
            status, body = "403 Forbidden", {"error": str(exc)}
    start_response(status, [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


@pytest.fixture
def api_fake(clock: Clock) -> FakeLogto:
    fake = FakeLogto(clock=clock, resources={API: ["read:items", "write:items"]}, organizations={"alice": ["org-1"]})
    fake.users["alice"] = {"custom_data": {"plan": "pro"},
                           "identities": {"wechat": {"userId": "wx-1", "details": {"nickname": "A"}}}}
    return fake


@pytest.fixture
def site(kind: str, api_fake: FakeLogto, clock: Clock) -> Harness:
    return Harness(kind, api_fake, clock, resources=[API], scopes=SCOPES,
                   asgi_app=Starlette(routes=[Route("/t/{op}", asgi_endpoint)]), wsgi_app=wsgi_endpoint)


def test_authorization_request_carries_resources(site: Harness) -> None:
    location = site.start_sign_in().headers["location"]
    query = parse_qs(urlsplit(location).query)
    assert query["resource"] == [API]
    assert query["scope"] == [SCOPES]


def test_resource_token_is_obtained_cached_and_refreshed(site: Harness) -> None:
    site.sign_in("alice")
    claims = site.client.get("/t/claims", params={"resource": API}).json()["result"]
    assert claims["aud"] == API and "read:items" in claims["scope"].split()
    assert site.fake.counts["token:refresh_token"] == 1
    first = site.client.get("/t/token", params={"resource": API}).json()["result"]
    assert site.fake.counts["token:refresh_token"] == 1  # cached in the session cookie
    site.clock.advance(site.fake.access_token_ttl - 30)  # within the leeway: a new grant
    second = site.client.get("/t/token", params={"resource": API}).json()["result"]
    assert second != first
    # The session's own token expired at the same time: one grant for it, one for the resource.
    assert site.fake.counts["token:refresh_token"] == 3
    grants = [form for method, path, form in site.fake.requests if path.endswith("/token")
              and form.get("grant_type") == "refresh_token"]
    assert [g.get("resource") for g in grants].count(API) == 2


def test_organization_token(site: Harness) -> None:
    site.sign_in("alice")
    claims = site.client.get("/t/org-claims", params={"org": "org-1"}).json()["result"]
    assert claims["aud"] == "urn:logto:organization:org-1"
    refused = site.client.get("/t/org-claims", params={"org": "org-2"})
    assert refused.status_code == 403 and "could not get an access token" in refused.json()["error"]
    # A refused grant does not end the session.
    assert site.client.get("/t/token").status_code == 200


def payload(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified (the test looks at what the provider issued)."""
    segment = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))  # type: ignore[no-any-return]


def test_organization_level_api_resource_token(site: Harness) -> None:
    """A resource *and* an organization: Logto's token for an organization-level API resource (the
    API's `aud` and an `organization_id` claim), kept apart from the global one and from another
    organization's."""
    site.fake.organizations["alice"] = ["org-1", "org-3"]
    site.sign_in("alice")

    def token(**params: str) -> str:
        response = site.client.get("/t/token", params={"resource": API, **params})
        assert response.status_code == 200, response.text
        return str(response.json()["result"])

    in_org1, in_org3, global_token = token(org="org-1"), token(org="org-3"), token()
    assert payload(in_org1)["aud"] == API and payload(in_org1)["organization_id"] == "org-1"
    assert payload(in_org3)["organization_id"] == "org-3"
    assert "organization_id" not in payload(global_token)
    grants = [form for _, path, form in site.fake.requests if path.endswith("/token")
              and form.get("grant_type") == "refresh_token"]
    assert [(g.get("resource"), g.get("organization_id")) for g in grants] == [
        (API, "org-1"), (API, "org-3"), (API, None)]
    assert token(org="org-1") == in_org1  # each cached in its own place
    assert site.fake.counts["token:refresh_token"] == 3
    refused = site.client.get("/t/token", params={"resource": API, "org": "org-2"})
    assert refused.status_code == 403 and "access_denied" in refused.json()["error"]


def test_a_token_for_another_organization_is_not_kept(site: Harness) -> None:
    """The provider answers a token for another organization (or audience) than asked: the session
    does not keep it, so it never serves it as this organization's, and keeps the rotated refresh
    token (the session goes on)."""
    site.sign_in("alice")
    fake = site.fake
    fake.rotate_refresh_token = "always"
    wrong = fake.sign_access_token(fake.make_access_token_claims("alice", "urn:logto:organization:org-2"))
    fake.token_response_hook = lambda body: {**body, "access_token": wrong}
    refused = site.client.get("/t/org-claims", params={"org": "org-1"})
    assert refused.status_code == 403 and "no access token" in refused.json()["error"]
    fake.token_response_hook = None
    claims = site.client.get("/t/org-claims", params={"org": "org-1"}).json()["result"]
    assert claims["aud"] == "urn:logto:organization:org-1"
    site.clock.advance(fake.access_token_ttl + 5)  # the session's own refresh, with the rotated token
    assert site.client.get("/t/token").status_code == 200  # still signed in


def test_ungranted_resource_is_an_access_token_error(site: Harness) -> None:
    site.sign_in("alice")
    refused = site.client.get("/t/token", params={"resource": "https://not-granted.example.com"})
    assert refused.status_code == 403 and "invalid_target" in refused.json()["error"]


def test_opaque_session_token_claims_are_refused(site: Harness) -> None:
    site.sign_in("alice")
    refused = site.client.get("/t/claims")
    assert refused.status_code == 403 and "opaque" in refused.json()["error"]


def test_fetch_user_info_includes_custom_data_and_identities(site: Harness) -> None:
    site.sign_in("alice")
    info = site.client.get("/t/userinfo").json()["result"]
    assert info["sub"] == site.fake.user_claims("alice")["sub"]
    assert info["custom_data"] == {"plan": "pro"}
    assert info["identities"]["wechat"]["userId"] == "wx-1"
    assert info["organizations"] == ["org-1"]


def test_fetch_user_info_refreshes_first(site: Harness) -> None:
    site.sign_in("alice")
    site.clock.advance(site.fake.access_token_ttl + 5)
    site.fake.rotate_refresh_token = "always"
    assert site.client.get("/t/userinfo").json()["result"]["custom_data"] == {"plan": "pro"}


def test_no_refresh_token_is_an_access_token_error(kind: str, api_fake: FakeLogto, clock: Clock) -> None:
    site = Harness(kind, api_fake, clock, resources=[API], scopes=SCOPES, prompt=None,
                   asgi_app=Starlette(routes=[Route("/t/{op}", asgi_endpoint)]), wsgi_app=wsgi_endpoint)
    site.sign_in("alice")  # no prompt=consent: Logto issues no refresh token
    refused = site.client.get("/t/token", params={"resource": API})
    assert refused.status_code == 403 and "refresh token" in refused.json()["error"]
