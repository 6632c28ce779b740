"""The example API and `/api-demo` of both examples, each under its real server, against the real
oidc-provider configured with one API resource (RFC 8707), like a Logto tenant with an API
resource that has the permissions read:items and write:items.

The provider's access tokens live a few seconds (the example refreshes 2 s before expiry and its
API allows no clock skew), so the tests can watch the resource token being renewed and a real
token expiring.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlencode, urlsplit

import httpx
import pytest
from interop.provider import OidcProviderProcess
from joserfc import jwt
from joserfc.jwk import ECKey

from logto_middleware._protocol.tokens import decode_unverified

from .harness import CLIENT_ID, CLIENT_SECRET, KINDS, Stack

RESOURCE = "https://api.items.example"
RESOURCE_SCOPES = ("read:items", "write:items")
TOKEN_TTL = 5  # seconds, for the session's access token and the resource's alike
REFRESH_LEEWAY = 2
API_PATH = "/example-api/items"
JWT_PATTERN = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")


@pytest.fixture(scope="module", params=KINDS)
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    running = Stack(str(request.param), access_token_ttl=TOKEN_TTL,
                    env={"AUTH_LOGTO_RESOURCES": RESOURCE, "AUTH_REFRESH_LEEWAY": str(REFRESH_LEEWAY),
                         "EXAMPLE_API_LEEWAY": "0"},
                    provider_options={"resource_indicator": RESOURCE, "resource_scopes": RESOURCE_SCOPES})
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15.0, follow_redirects=False) as client:
        yield client


# -- the test as an OAuth client of its own --------------------------------------------------


def token_request(op: OidcProviderProcess, form: dict[str, str]) -> dict[str, Any]:
    credentials = f"{quote_plus(CLIENT_ID)}:{quote_plus(CLIENT_SECRET)}".encode()
    response = httpx.post(op.token_endpoint, data=form, timeout=10.0,
                          headers={"Authorization": "Basic " + base64.b64encode(credentials).decode()})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def provider_tokens(stack: Stack, username: str, scope: str) -> dict[str, str]:
    """Real tokens of the provider for the app's client, got by the test itself (it knows the
    client's credentials) with exactly the scopes it wants: sign in with `resource`, exchange
    the code (an opaque access token for userinfo, an ID token), then a refresh grant for the
    resource (its JWT access token)."""
    op = stack.op
    verifier = secrets.token_urlsafe(48)
    redirect_uri = stack.url("/api/auth/callback/logto")  # registered; never requested here
    params = {
        "client_id": CLIENT_ID, "response_type": "code", "redirect_uri": redirect_uri, "scope": scope,
        "state": secrets.token_urlsafe(16), "nonce": secrets.token_urlsafe(16), "prompt": "consent",
        "code_challenge": base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode(),
        "code_challenge_method": "S256", "resource": RESOURCE,
    }
    with httpx.Client(timeout=10.0) as user_agent:  # a provider session of its own
        back = op.login(user_agent, f"{op.authorization_endpoint}?{urlencode(params)}", username)
    code = parse_qs(urlsplit(back).query)["code"][0]
    tokens = token_request(op, {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                                "code_verifier": verifier})
    resource = token_request(op, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                                  "resource": RESOURCE})
    return {"jwt": resource["access_token"], "opaque": tokens["access_token"], "id_token": tokens["id_token"]}


def claims_of(token: str) -> dict[str, Any]:
    return decode_unverified(token)[1]


def foreign_token(claims: dict[str, Any], kid: str | None) -> str:
    """`claims` signed ES384 with a fresh P-384 key the provider never published."""
    header = {"alg": "ES384", "typ": "at+jwt", **({"kid": kid} if kid else {})}
    return jwt.encode(header, claims, ECKey.generate_key("P-384"), algorithms=["ES384"])


def call_api(stack: Stack, authorization: str | None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = httpx.get(stack.url(API_PATH), headers=headers, timeout=10.0)
    assert response.headers["content-type"].startswith("application/json"), response.text
    assert response.headers["cache-control"] == "no-store"
    return response


def assert_refused(response: httpx.Response, status: int, error: str | None) -> dict[str, Any]:
    """An RFC 6750 refusal: the status, and the error code in the body and the challenge."""
    assert response.status_code == status, f"{response.status_code} {response.text}"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    body: dict[str, Any] = response.json()
    if error is None:  # RFC 6750 3.1: a request without a token gets no error code
        assert "error=" not in challenge
    else:
        assert f'error="{error}"' in challenge and body["error"] == error
    return body


# -- the page ------------------------------------------------------------------------------


def element(page: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</(?:pre|span|p)>', page, re.S)
    assert match, f"no #{element_id} in the page:\n{page}"
    return html.unescape(match.group(1))


def claims_table(page: str, table_id: str) -> dict[str, str]:
    match = re.search(rf'<table id="{table_id}">(.*?)</table>', page, re.S)
    assert match, f"no table {table_id} in the page:\n{page}"
    rows = re.findall(r"<tr><td><code>(.*?)</code></td><td>(.*?)</td></tr>", match.group(1), re.S)
    return {html.unescape(name): html.unescape(value) for name, value in rows}


def api_demo(stack: Stack, browser: httpx.Client) -> tuple[dict[str, Any], dict[str, str]]:
    """Open /api-demo; returns what the example API answered it and the token claims it shows."""
    response = browser.get(stack.url("/api-demo"))
    assert response.status_code == 200, f"{response.text}\n{stack.server.log}"
    page = response.text
    assert not JWT_PATTERN.search(page), "a token reached the browser"
    assert element(page, "api-status") == "200", f"{page}\n{stack.server.log}"
    answer: dict[str, Any] = json.loads(element(page, "api-response"))
    return answer, claims_table(page, "token-claims")


def test_api_demo_gets_a_resource_token_and_the_example_api_accepts_it(stack: Stack, browser: httpx.Client) -> None:
    op = stack.op
    op.reset_stats()
    start = browser.get(stack.url("/api/auth/signin"), params={"callbackUrl": "/api-demo"})
    location = start.headers["location"]
    query = parse_qs(urlsplit(location).query)
    assert query["resource"] == [RESOURCE]
    assert query["scope"] == ["openid offline_access profile email read:items"]
    landed = browser.get(op.login(browser, location, "alice"))
    assert landed.headers["location"] == stack.url("/api-demo"), landed.text

    answer, claims = api_demo(stack, browser)
    # The example API verified a JWT of the provider for its resource, with read:items.
    assert answer["caller"] == {"sub": "alice", "client_id": CLIENT_ID, "scopes": ["read:items"],
                                "organization_id": None}
    assert [item["name"] for item in answer["items"]] == ["Notebook", "Fountain pen", "Ink, blue"]
    assert (claims["iss"], claims["aud"], claims["sub"], claims["scope"]) == (op.issuer, RESOURCE, "alice",
                                                                             "read:items")
    expires = int(claims["exp"].split()[0])
    assert op.stats()["resource_grants"] == {RESOURCE: 1}

    # Kept in the session while fresh ...
    assert api_demo(stack, browser)[1]["jti"] == claims["jti"]
    assert op.stats()["resource_grants"] == {RESOURCE: 1}
    # ... and renewed once due (the refresh token it uses is rotated on every grant).
    time.sleep(max(0.0, expires - REFRESH_LEEWAY + 0.3 - time.time()))
    renewed_answer, renewed = api_demo(stack, browser)
    assert renewed["jti"] != claims["jti"] and int(renewed["exp"].split()[0]) > expires
    assert renewed_answer["caller"]["sub"] == "alice"
    stats = op.stats()
    assert stats["resource_grants"] == {RESOURCE: 2}
    assert stats["refresh_token_errors"] == 0
    assert browser.get(stack.url("/api/me")).json()["user"]["id"] == "alice"  # the session lives on


def test_example_api_accepts_only_valid_tokens_of_its_resource_with_read_items(stack: Stack) -> None:
    good = provider_tokens(stack, "alice", "openid offline_access read:items")
    lacking = provider_tokens(stack, "carol", "openid offline_access write:items")
    assert (claims_of(good["jwt"])["aud"], claims_of(good["jwt"])["scope"]) == (RESOURCE, "read:items")
    assert claims_of(lacking["jwt"])["scope"] == "write:items"

    # 200 with a valid token for the resource with read:items.
    ok = call_api(stack, f"Bearer {good['jwt']}")
    assert ok.status_code == 200, f"{ok.text}\n{stack.server.log}"
    assert ok.json()["caller"] == {"sub": "alice", "client_id": CLIENT_ID, "scopes": ["read:items"],
                                   "organization_id": None}

    # 401 without a token, or with something else than a bearer token.
    body = assert_refused(call_api(stack, None), 401, None)
    assert body["error"] == "unauthorized"
    assert_refused(call_api(stack, f"Basic {base64.b64encode(b'alice:secret').decode()}"), 401, None)

    # 403 with a valid token of the resource that lacks read:items.
    lacking_answer = call_api(stack, f"Bearer {lacking['jwt']}")
    assert_refused(lacking_answer, 403, "insufficient_scope")
    assert 'scope="read:items"' in lacking_answer.headers["www-authenticate"]

    # 401 with tokens of the provider that are not access tokens for this API ...
    for other in (good["opaque"], good["id_token"]):
        assert_refused(call_api(stack, f"Bearer {other}"), 401, "invalid_token")
    # ... with a good token's claims signed by another key (the provider's kid, an unknown one, none) ...
    provider_kid = decode_unverified(good["jwt"])[0]["kid"]
    for kid in (provider_kid, "not-a-provider-key", None):
        assert_refused(call_api(stack, f"Bearer {foreign_token(claims_of(good['jwt']), kid)}"), 401, "invalid_token")
    # ... and with a good token whose claims were changed after signing.
    header, _payload, signature = good["jwt"].split(".")
    widened = {**claims_of(good["jwt"]), "scope": "read:items write:items"}
    tampered = base64.urlsafe_b64encode(json.dumps(widened).encode()).rstrip(b"=").decode()
    assert_refused(call_api(stack, f"Bearer {header}.{tampered}.{signature}"), 401, "invalid_token")

    # The token that was accepted is refused once it has expired.
    time.sleep(max(0.0, claims_of(good["jwt"])["exp"] + 1.0 - time.time()))
    expired = assert_refused(call_api(stack, f"Bearer {good['jwt']}"), 401, "invalid_token")
    assert "expired" in expired["error_description"]
