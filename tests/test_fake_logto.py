"""Tests for ``logto_middleware.testing.FakeLogto``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import re
import secrets
import subprocess
import sys
import types
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from starlette.testclient import TestClient

from logto_middleware.testing import FakeLogto, main
from logto_middleware.testing.provider import RotationMode

ISSUER = "http://127.0.0.1:3001/oidc"
REDIRECT = "http://app.test/callback"
SECRET = "fake#secret:with:colons"
AUTH = ("fake-client", SECRET)
ES384 = ["ES384"]


class Clock:
    """A settable clock for ``FakeLogto(clock=...)``."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def auth_params(challenge: str, **extra: str) -> dict[str, str]:
    params = {
        "client_id": "fake-client",
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid profile email offline_access",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "st4te",
        "nonce": "n0nce",
    }
    params.update(extra)
    return params


def get_code(client: httpx.Client, login: str = "alice", **extra: str) -> tuple[str, str]:
    """Authorize as ``login``; return (code, verifier)."""
    verifier, challenge = pkce()
    params = auth_params(challenge, login=login, **extra)
    response = client.get(f"{ISSUER}/auth", params=params)
    assert response.status_code == 302, response.text
    query = httpx.URL(response.headers["location"]).params
    return query["code"], verifier


def exchange(client: httpx.Client, code: str, verifier: str) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    return client.post(f"{ISSUER}/token", data=data, auth=AUTH)


def sign_in(client: httpx.Client, **extra: str) -> dict[str, Any]:
    """Full code flow (with prompt=consent unless overridden); return the token JSON."""
    extra.setdefault("prompt", "consent")
    code, verifier = get_code(client, **extra)
    response = exchange(client, code, verifier)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refresh(client: httpx.Client, token: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token}
    return client.post(f"{ISSUER}/token", data=data, auth=AUTH)


def userinfo(client: httpx.Client, access_token: str) -> httpx.Response:
    return client.get(f"{ISSUER}/me", headers={"Authorization": f"Bearer {access_token}"})


def verify(fake: FakeLogto, client: httpx.Client, id_token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(client.get(f"{ISSUER}/jwks").json())
    return dict(jwt.decode(id_token, keys, algorithms=ES384).claims)


@pytest.fixture
def fake() -> FakeLogto:
    return FakeLogto()


@pytest.fixture
def client(fake: FakeLogto) -> httpx.Client:
    return httpx.Client(transport=fake.transport())


# --------------------------------------------------------------------- metadata


def test_discovery_document(fake: FakeLogto) -> None:
    doc = TestClient(fake.app).get("/oidc/.well-known/openid-configuration").json()
    assert doc["issuer"] == ISSUER
    assert doc["authorization_endpoint"] == f"{ISSUER}/auth"
    assert doc["token_endpoint"] == f"{ISSUER}/token"
    assert doc["userinfo_endpoint"] == f"{ISSUER}/me"
    assert doc["jwks_uri"] == f"{ISSUER}/jwks"
    assert doc["end_session_endpoint"] == f"{ISSUER}/session/end"
    assert doc["revocation_endpoint"] == f"{ISSUER}/token/revocation"
    assert doc["id_token_signing_alg_values_supported"] == ["ES384"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["response_types_supported"] == ["code"]
    assert {"authorization_code", "refresh_token"} <= set(doc["grant_types_supported"])
    assert doc["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    assert {"openid", "offline_access", "profile", "email"} <= set(doc["scopes_supported"])
    assert {"sub", "name", "username", "email", "picture"} <= set(doc["claims_supported"])


def test_discovery_overrides_and_jwks_override(fake: FakeLogto, client: httpx.Client) -> None:
    fake.discovery_overrides = {"issuer": "https://evil.test/oidc", "userinfo_endpoint": None}
    fake.jwks_override = {"keys": []}
    doc = client.get(f"{ISSUER}/.well-known/openid-configuration").json()
    assert doc["issuer"] == "https://evil.test/oidc"
    assert "userinfo_endpoint" not in doc
    assert client.get(f"{ISSUER}/jwks").json() == {"keys": []}


def test_jwks_publishes_ec_p384_keys(fake: FakeLogto, client: httpx.Client) -> None:
    response = client.get(f"{ISSUER}/jwks")
    assert response.headers["content-type"].startswith("application/jwk-set+json")
    (key,) = response.json()["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-384"
    assert key["alg"] == "ES384" and key["use"] == "sig"
    assert key["kid"] == fake.current_kid
    assert "d" not in key


def test_rotate_keys(fake: FakeLogto, client: httpx.Client) -> None:
    old = fake.current_kid
    new = fake.rotate_keys()
    assert new != old and fake.current_kid == new
    kids = [k["kid"] for k in client.get(f"{ISSUER}/jwks").json()["keys"]]
    assert kids == [old, new]
    id_token = sign_in(client)["id_token"]
    assert (
        jwt.decode(id_token, KeySet.import_key_set(fake.jwks()), algorithms=ES384).header["kid"]
        == new
    )
    newest = fake.rotate_keys(drop_old=True)
    assert [k["kid"] for k in fake.jwks()["keys"]] == [newest]


# -------------------------------------------------------------------- code flow


def test_full_code_flow_with_pkce_through_asgi(fake: FakeLogto) -> None:
    web = TestClient(fake.app, base_url="http://127.0.0.1:3001", follow_redirects=False)
    verifier, challenge = pkce()
    page = web.get("/oidc/auth", params=auth_params(challenge, direct_sign_in="social:wechat"))
    assert page.status_code == 200
    assert "development only, never use in production" in page.text
    assert "social:wechat" in page.text
    assert "name='login'" in page.text

    form = auth_params(challenge, direct_sign_in="social:wechat", login="alice", action="login")
    redirect = web.post("/oidc/auth", data=form)
    assert redirect.status_code == 302
    location = httpx.URL(redirect.headers["location"])
    assert str(location.copy_with(query=None)) == REDIRECT
    assert location.params["state"] == "st4te"
    assert location.params["iss"] == ISSUER

    token = web.post(
        "/oidc/token",
        data={
            "grant_type": "authorization_code",
            "code": location.params["code"],
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=AUTH,
    )
    assert token.status_code == 200, token.text
    assert token.headers["cache-control"] == "no-store"
    body = token.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert len(body["access_token"]) == 43
    assert body["scope"] == "openid profile email"  # offline_access needs prompt=consent
    assert "refresh_token" not in body
    claims = jwt.decode(
        body["id_token"], KeySet.import_key_set(fake.jwks()), algorithms=ES384
    ).claims
    assert claims["username"] == "alice"

    me = web.get("/oidc/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["sub"] == claims["sub"]


def test_id_token_claims_verify_with_jwks(fake: FakeLogto, client: httpx.Client) -> None:
    body = sign_in(client, login="alice")
    claims = verify(fake, client, body["id_token"])
    assert claims["iss"] == ISSUER
    assert claims["aud"] == "fake-client"
    assert claims["nonce"] == "n0nce"
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["auth_time"] <= claims["iat"]
    assert claims["sid"]
    digest = hashlib.sha384(body["access_token"].encode()).digest()[:24]
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert claims["name"] == "Alice"
    assert claims["username"] == "alice"
    assert claims["email"] == "alice@example.com"
    assert claims["email_verified"] is True
    assert claims["picture"]
    assert len(claims["sub"]) == 12


def test_subject_is_stable_per_user(client: httpx.Client, fake: FakeLogto) -> None:
    first = verify(fake, client, sign_in(client, login="alice")["id_token"])
    second = verify(fake, client, sign_in(client, login="alice")["id_token"])
    other = verify(fake, client, sign_in(client, login="bob")["id_token"])
    assert first["sub"] == second["sub"] != other["sub"]
    assert first["sid"] != second["sid"]


def test_scopes_limit_released_claims(fake: FakeLogto, client: httpx.Client) -> None:
    body = sign_in(client, scope="openid")
    claims = verify(fake, client, body["id_token"])
    assert "email" not in claims and "name" not in claims
    assert set(userinfo(client, body["access_token"]).json()) == {"sub"}


def test_user_overrides(fake: FakeLogto, client: httpx.Client) -> None:
    fake.users["alice"] = {"name": None, "roles": ["admin"], "email": "a@corp.test"}
    body = sign_in(client, scope="openid profile email roles")
    claims = verify(fake, client, body["id_token"])
    assert "name" not in claims
    assert claims["username"] == "alice"
    assert claims["email"] == "a@corp.test"
    assert claims["roles"] == ["admin"]


def test_auto_login() -> None:
    fake = FakeLogto(auto_login="carol")
    web = httpx.Client(transport=fake.transport())
    _, challenge = pkce()
    response = web.get(f"{ISSUER}/auth", params=auth_params(challenge))
    assert response.status_code == 302
    assert "code" in httpx.URL(response.headers["location"]).params


def test_authorize_helper(fake: FakeLogto) -> None:
    _, challenge = pkce()
    url = str(httpx.URL(f"{ISSUER}/auth", params=auth_params(challenge)))
    location = httpx.URL(fake.authorize(url, login="dave"))
    assert location.params["state"] == "st4te" and location.params["code"]


def test_provider_session_is_reused(fake: FakeLogto) -> None:
    web = httpx.Client(transport=fake.transport())
    get_code(web, login="alice")
    _, challenge = pkce()
    again = web.get(f"{ISSUER}/auth", params=auth_params(challenge, prompt="none"))
    assert "code" in httpx.URL(again.headers["location"]).params
    forced = web.get(f"{ISSUER}/auth", params=auth_params(challenge, prompt="login"))
    assert forced.status_code == 200 and "Sign in" in forced.text


def test_max_age_is_honoured_like_oidc_provider() -> None:
    clock = Clock()
    fake = FakeLogto(issuer=ISSUER, client_id="fake-client", client_secret=SECRET, clock=clock)
    web = httpx.Client(transport=fake.transport())
    get_code(web, login="alice")
    signed_in_at = int(clock.now)
    clock.now += 100
    _, challenge = pkce()
    recent = web.get(f"{ISSUER}/auth", params=auth_params(challenge, max_age="100"))
    assert "code" in httpx.URL(recent.headers["location"]).params  # the session is young enough
    too_old = web.get(f"{ISSUER}/auth", params=auth_params(challenge, max_age="99"))
    assert too_old.status_code == 200 and "Sign in" in too_old.text  # credentials again
    silent = web.get(f"{ISSUER}/auth", params=auth_params(challenge, max_age="99", prompt="none"))
    assert httpx.URL(silent.headers["location"]).params["error"] == "login_required"
    zero = web.get(f"{ISSUER}/auth", params=auth_params(challenge, max_age="0"))
    assert zero.status_code == 200 and "Sign in" in zero.text  # max_age=0 is prompt=login
    code, verifier = get_code(web, login="alice", max_age="0")
    claims = verify(fake, web, exchange(web, code, verifier).json()["id_token"])
    assert claims["auth_time"] == int(clock.now) != signed_in_at


@pytest.mark.parametrize("value", ["-1", "1.5", "abc", "1" * 16])
def test_invalid_max_age_is_invalid_request(client: httpx.Client, value: str) -> None:
    _, challenge = pkce()
    response = client.get(f"{ISSUER}/auth", params=auth_params(challenge, max_age=value))
    query = httpx.URL(response.headers["location"]).params
    assert (query["error"], query["error_description"]) == ("invalid_request", "invalid max_age parameter value")


def test_prompt_none_without_session(client: httpx.Client) -> None:
    _, challenge = pkce()
    response = client.get(f"{ISSUER}/auth", params=auth_params(challenge, prompt="none"))
    assert httpx.URL(response.headers["location"]).params["error"] == "login_required"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge": ""}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "profile"}, "invalid_scope"),
        ({"login": "deny"}, "access_denied"),
        ({"action": "cancel"}, "access_denied"),
    ],
)
def test_authorize_errors_redirect(
    client: httpx.Client, change: dict[str, str], error: str
) -> None:
    _, challenge = pkce()
    params = {k: v for k, v in {**auth_params(challenge), **change}.items() if v}
    response = client.get(f"{ISSUER}/auth", params=params)
    assert response.status_code == 302
    query = httpx.URL(response.headers["location"]).params
    assert query["error"] == error
    assert query["error_description"]
    assert query["state"] == "st4te"
    assert query["iss"] == ISSUER
    assert "code" not in query


def test_authorize_errors_without_safe_redirect() -> None:
    fake = FakeLogto(redirect_uris=[REDIRECT])
    web = httpx.Client(transport=fake.transport())
    _, challenge = pkce()
    for change in ({"redirect_uri": "https://evil.test/cb"}, {"client_id": "other"}):
        response = web.get(f"{ISSUER}/auth", params={**auth_params(challenge), **change})
        assert response.status_code == 400
        assert "location" not in response.headers
    assert web.get(f"{ISSUER}/auth", params=auth_params(challenge, login="x")).status_code == 302


def test_invalid_user_name_shows_form_again(client: httpx.Client) -> None:
    _, challenge = pkce()
    response = client.post(
        f"{ISSUER}/auth", data=auth_params(challenge, login="<b>", action="login")
    )
    assert response.status_code == 200
    assert "User names use" in response.text and "<b>" not in response.text


# ------------------------------------------------------------------ token endpoint


def test_client_secret_basic_rfc6749_encoding(client: httpx.Client) -> None:
    code, verifier = get_code(client)
    raw = f"{quote('fake-client', safe='')}:{quote(SECRET, safe='')}"
    assert "%23" in raw and "%3A" in raw
    basic = base64.b64encode(raw.encode()).decode()
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    response = client.post(
        f"{ISSUER}/token", data=data, headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 200, response.text


def test_client_authentication_variants(client: httpx.Client) -> None:
    code, verifier = get_code(client)
    base = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    wrong = client.post(f"{ISSUER}/token", data=base, auth=("fake-client", "nope"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert "www-authenticate" in wrong.headers
    anonymous = client.post(f"{ISSUER}/token", data=base)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    both = client.post(f"{ISSUER}/token", data={**base, "client_secret": SECRET}, auth=AUTH)
    assert both.status_code == 400 and both.json()["error"] == "invalid_request"
    post = {**base, "client_id": "fake-client", "client_secret": SECRET}
    assert client.post(f"{ISSUER}/token", data=post).status_code == 200


def test_pkce_and_redirect_uri_checked(client: httpx.Client) -> None:
    code, verifier = get_code(client)
    bad = exchange(client, code, pkce()[0])
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": "http://app.test/other",
        "code_verifier": verifier,
    }
    mismatch = client.post(f"{ISSUER}/token", data=data, auth=AUTH)
    assert mismatch.json()["error"] == "invalid_grant"
    assert exchange(client, code, verifier).status_code == 200  # failures did not consume it


def test_code_reuse_rejected_and_tokens_revoked(client: httpx.Client) -> None:
    code, verifier = get_code(client, prompt="consent")
    first = exchange(client, code, verifier).json()
    again = exchange(client, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert userinfo(client, first["access_token"]).status_code == 401
    assert refresh(client, first["refresh_token"]).json()["error"] == "invalid_grant"


def test_code_expires() -> None:
    clock = Clock()
    fake = FakeLogto(clock=clock)
    web = httpx.Client(transport=fake.transport())
    code, verifier = get_code(web)
    clock.now += 61
    assert exchange(web, code, verifier).json()["error"] == "invalid_grant"


def test_refresh_token_only_with_prompt_consent(client: httpx.Client) -> None:
    assert "refresh_token" in sign_in(client, prompt="consent")
    without_consent = sign_in(client, prompt="login")
    assert "refresh_token" not in without_consent
    assert "offline_access" not in without_consent["scope"].split()
    no_offline = sign_in(client, prompt="consent", scope="openid profile")
    assert "refresh_token" not in no_offline


def test_unsupported_grant_type(client: httpx.Client) -> None:
    data = {"grant_type": "password"}
    response = client.post(f"{ISSUER}/token", data=data, auth=AUTH)
    assert response.json()["error"] == "unsupported_grant_type"


# ------------------------------------------------------------------ refresh tokens


def make_refreshable(mode: RotationMode) -> tuple[FakeLogto, Clock, httpx.Client, dict[str, Any]]:
    clock = Clock()
    fake = FakeLogto(clock=clock, rotate_refresh_token=mode, refresh_token_ttl=1000)
    web = httpx.Client(transport=fake.transport())
    return fake, clock, web, sign_in(web)


def test_refresh_logto_rotation() -> None:
    fake, clock, web, tokens = make_refreshable("logto")
    first = tokens["refresh_token"]
    clock.now += 600  # 60% of the lifetime: the same token comes back
    young = refresh(web, first).json()
    assert young["refresh_token"] == first
    assert young["token_type"] == "Bearer" and young["expires_in"] == 3600
    assert young["access_token"] != tokens["access_token"]
    assert young["scope"] == tokens["scope"]
    claims = verify(fake, web, young["id_token"])
    assert "nonce" not in claims
    clock.now += 101  # past 70%: rotated
    rotated = refresh(web, first).json()["refresh_token"]
    assert rotated != first
    assert refresh(web, rotated).json()["refresh_token"] == rotated  # fresh again
    assert fake.counts["token:refresh_token"] == 3


def test_refresh_always_rotates() -> None:
    _, _, web, tokens = make_refreshable("always")
    second = refresh(web, tokens["refresh_token"]).json()["refresh_token"]
    third = refresh(web, second).json()["refresh_token"]
    assert len({tokens["refresh_token"], second, third}) == 3


def test_refresh_never_rotates() -> None:
    _, clock, web, tokens = make_refreshable("never")
    clock.now += 990
    assert refresh(web, tokens["refresh_token"]).json()["refresh_token"] == tokens["refresh_token"]
    clock.now += 10
    expired = refresh(web, tokens["refresh_token"])
    assert expired.status_code == 400 and expired.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("mode", ["logto", "always"])
def test_reused_rotated_refresh_token_revokes_grant(mode: RotationMode) -> None:
    _, clock, web, tokens = make_refreshable(mode)
    clock.now += 800
    rotated = refresh(web, tokens["refresh_token"]).json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    reuse = refresh(web, tokens["refresh_token"])
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    assert refresh(web, rotated["refresh_token"]).json()["error"] == "invalid_grant"
    assert userinfo(web, rotated["access_token"]).status_code == 401


def test_refresh_scope_narrowing(client: httpx.Client) -> None:
    tokens = sign_in(client)
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    narrow = client.post(f"{ISSUER}/token", data={**data, "scope": "openid"}, auth=AUTH).json()
    assert narrow["scope"] == "openid"
    wider = client.post(f"{ISSUER}/token", data={**data, "scope": "openid phone"}, auth=AUTH)
    assert wider.json()["error"] == "invalid_scope"


# ------------------------------------------------------------- userinfo & sign-out


def test_userinfo(fake: FakeLogto, client: httpx.Client) -> None:
    tokens = sign_in(client)
    claims = userinfo(client, tokens["access_token"]).json()
    assert claims["username"] == "alice" and claims["email"] == "alice@example.com"
    posted = client.post(
        f"{ISSUER}/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert posted.json() == claims
    missing = client.get(f"{ISSUER}/me")
    assert missing.status_code == 401 and "www-authenticate" in missing.headers
    assert userinfo(client, "bogus").status_code == 401


def test_userinfo_token_expires() -> None:
    clock = Clock()
    fake = FakeLogto(clock=clock, access_token_ttl=60)
    web = httpx.Client(transport=fake.transport())
    tokens = sign_in(web)
    assert tokens["expires_in"] == 60
    clock.now += 60
    assert userinfo(web, tokens["access_token"]).status_code == 401


def test_end_session_redirect() -> None:
    fake = FakeLogto(post_logout_redirect_uris=["http://app.test/bye"])
    web = httpx.Client(transport=fake.transport())
    online = sign_in(web, prompt="login")
    offline = sign_in(web)
    params = {
        "id_token_hint": online["id_token"],
        "post_logout_redirect_uri": "http://app.test/bye",
        "state": "xyz",
    }
    response = web.get(f"{ISSUER}/session/end", params=params)
    assert response.status_code == 302
    assert response.headers["location"] == "http://app.test/bye?state=xyz"
    assert userinfo(web, online["access_token"]).status_code == 401
    assert refresh(web, offline["refresh_token"]).status_code == 200  # offline survives
    _, challenge = pkce()
    again = web.get(f"{ISSUER}/auth", params=auth_params(challenge, prompt="none"))
    assert httpx.URL(again.headers["location"]).params["error"] == "login_required"
    assert fake.counts["end_session"] == 1


def test_end_session_rejects_unregistered_redirect_and_shows_page() -> None:
    fake = FakeLogto(post_logout_redirect_uris=["http://app.test/bye"])
    web = httpx.Client(transport=fake.transport())
    evil = {"client_id": "fake-client", "post_logout_redirect_uri": "https://evil.test/"}
    assert web.get(f"{ISSUER}/session/end", params=evil).status_code == 400
    forged = {"id_token_hint": "not.a.jwt", "client_id": "fake-client"}
    assert web.get(f"{ISSUER}/session/end", params=forged).status_code == 400
    page = web.get(f"{ISSUER}/session/end", params={"client_id": "fake-client"})
    assert page.status_code == 200 and "Signed out" in page.text


def test_revocation(client: httpx.Client) -> None:
    tokens = sign_in(client)
    url = f"{ISSUER}/token/revocation"
    assert client.post(url, data={"token": tokens["access_token"]}).status_code == 401
    response = client.post(url, data={"token": tokens["access_token"]}, auth=AUTH)
    assert response.status_code == 200
    assert userinfo(client, tokens["access_token"]).status_code == 401
    renewed = refresh(client, tokens["refresh_token"]).json()
    assert client.post(url, data={"token": tokens["refresh_token"]}, auth=AUTH).status_code == 200
    assert refresh(client, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert userinfo(client, renewed["access_token"]).status_code == 401
    assert client.post(url, data={"token": "unknown"}, auth=AUTH).status_code == 200


# ------------------------------------------------------------------ hostile knobs


def test_outage_and_fail_next(fake: FakeLogto, client: httpx.Client) -> None:
    discovery = f"{ISSUER}/.well-known/openid-configuration"
    fake.outage.add("discovery")
    assert client.get(discovery).status_code == 503
    fake.outage.clear()
    assert client.get(discovery).status_code == 200
    fake.fail_next("jwks", status=500, times=2)
    assert [client.get(f"{ISSUER}/jwks").status_code for _ in range(3)] == [500, 500, 200]
    assert fake.counts["jwks"] == 3
    with pytest.raises(ValueError, match="unknown endpoint"):
        fake.fail_next("nope")


def test_token_response_hook(fake: FakeLogto, client: httpx.Client) -> None:
    def rewrite(body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "token_type": "mac"}

    fake.token_response_hook = rewrite
    assert sign_in(client)["token_type"] == "mac"
    fake.token_response_hook = lambda body: httpx.Response(502, text="bad gateway")
    code, verifier = get_code(client)
    response = exchange(client, code, verifier)
    assert response.status_code == 502 and response.text == "bad gateway"


def test_logout_tokens_are_shaped_like_logtos(fake: FakeLogto) -> None:
    """Like oidc-provider's (Logto's): typ logout+jwt, exp two minutes after iat, a fresh jti,
    the back-channel logout event, no nonce; sub and/or sid."""
    keys = KeySet.import_key_set(fake.jwks())
    token = jwt.decode(fake.sign_logout_token(fake.make_logout_token_claims("alice", sid="s-1")), keys,
                       algorithms=ES384)
    claims = token.claims
    assert token.header["typ"] == "logout+jwt"
    assert claims["iss"] == fake.issuer and claims["aud"] == fake.client_id
    assert claims["sub"] == fake.user_claims("alice")["sub"] and claims["sid"] == "s-1"
    assert claims["iat"] == int(fake.clock()) and claims["exp"] == claims["iat"] + 120
    assert claims["events"] == {"http://schemas.openid.net/event/backchannel-logout": {}}
    assert "nonce" not in claims
    assert fake.make_logout_token_claims("alice")["jti"] != claims["jti"]
    only_sid = fake.make_logout_token_claims(sid="s-2")
    assert "sub" not in only_sid and only_sid["sid"] == "s-2"
    assert "exp" not in fake.make_logout_token_claims("alice", exp=None)
    with pytest.raises(ValueError, match="names a user"):
        fake.make_logout_token_claims()


def test_sign_id_token_forgeries(fake: FakeLogto) -> None:
    claims = fake.make_id_token_claims("mallory", nonce="n", aud="other", email=None)
    assert claims["aud"] == "other" and claims["nonce"] == "n" and "email" not in claims
    keys = KeySet.import_key_set(fake.jwks())
    genuine = fake.sign_id_token(claims)
    assert jwt.decode(genuine, keys, algorithms=ES384).claims["sub"] == claims["sub"]

    foreign = ECKey.generate_key("P-384")
    forged = fake.sign_id_token(claims, key=foreign)
    assert jwt.decode(forged, foreign, algorithms=ES384).header["kid"] == fake.current_kid
    with pytest.raises(JoseError):
        jwt.decode(forged, keys, algorithms=ES384)

    unsigned = fake.sign_id_token(claims, alg="none", headers={"kid": None})
    header = unsigned.split(".")[0]
    assert unsigned.endswith(".")
    assert b'"none"' in base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))


# ------------------------------------------------------ API resources & organizations

API = "https://api.example.com"
OTHER_API = "https://other.example.com"
ORG_RESOURCE = "urn:logto:resource:organizations"
ORG_SCOPE = "urn:logto:scope:organizations"


def resource_fake(**kwargs: Any) -> FakeLogto:
    kwargs.setdefault("resources", {API: ["read:items", "write:items"], OTHER_API: ["other:read"]})
    return FakeLogto(**kwargs)


def authorize_pairs(client: httpx.Client, pairs: list[tuple[str, str]]) -> tuple[httpx.URL, str]:
    """GET /auth with (possibly repeated) parameters on top of the defaults; return the
    redirect and the PKCE verifier."""
    verifier, challenge = pkce()
    defaults = auth_params(challenge, login="alice", prompt="consent")
    names = {name for name, _ in pairs}
    query = httpx.QueryParams(tuple([(k, v) for k, v in defaults.items() if k not in names] + pairs))
    response = client.get(f"{ISSUER}/auth", params=query)
    assert response.status_code == 302, response.text
    return httpx.URL(response.headers["location"]), verifier


def exchange_location(
    client: httpx.Client, location: httpx.URL, verifier: str, **form: str
) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": location.params["code"],
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        **form,
    }
    return client.post(f"{ISSUER}/token", data=data, auth=AUTH)


def sign_in_with(client: httpx.Client, scope: str, *resources: str, login: str = "alice") -> dict[str, Any]:
    pairs = [("scope", scope), ("login", login), *[("resource", r) for r in resources]]
    location, verifier = authorize_pairs(client, pairs)
    assert "error" not in location.params, location
    response = exchange_location(client, location, verifier)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refresh_for(client: httpx.Client, token: str, **extra: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token, **extra}
    return client.post(f"{ISSUER}/token", data=data, auth=AUTH)


def decode_access_token(fake: FakeLogto, token: str) -> jwt.Token:
    return jwt.decode(token, KeySet.import_key_set(fake.jwks()), algorithms=ES384)


def test_resource_token_from_refresh_grant() -> None:
    clock = Clock()
    fake = resource_fake(clock=clock, access_token_ttl=300)
    web = httpx.Client(transport=fake.transport())
    tokens = sign_in_with(web, "openid profile offline_access read:items", API)
    # the code exchange without `resource` is for userinfo, like Logto: opaque, OIDC scopes
    assert len(tokens["access_token"]) == 43 and "." not in tokens["access_token"]
    assert tokens["scope"] == "openid profile offline_access"
    assert userinfo(web, tokens["access_token"]).json()["username"] == "alice"

    response = refresh_for(web, tokens["refresh_token"], resource=API)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "read:items"
    assert body["refresh_token"] == tokens["refresh_token"]  # young: Logto keeps it
    assert verify(fake, web, body["id_token"])["sub"] == fake.user_claims("alice")["sub"]

    token = decode_access_token(fake, body["access_token"])
    assert token.header == {"alg": "ES384", "typ": "at+jwt", "kid": fake.current_kid}
    claims = token.claims
    assert claims["iss"] == ISSUER
    assert claims["sub"] == fake.user_claims("alice")["sub"]
    assert claims["aud"] == API
    assert claims["client_id"] == "fake-client"
    assert claims["scope"] == "read:items"
    assert claims["iat"] == int(clock.now) and claims["exp"] == int(clock.now) + 300
    assert len(claims["jti"]) >= 32
    assert "organization_id" not in claims
    assert list(claims) == ["jti", "sub", "iat", "exp", "scope", "client_id", "iss", "aud"]

    # a resource JWT is refused at userinfo, like Logto
    refused = userinfo(web, body["access_token"])
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
    # and a refresh without `resource` still gets the session's own opaque token
    own = refresh(web, tokens["refresh_token"]).json()
    assert "." not in own["access_token"] and own["scope"] == "openid profile offline_access"
    assert fake.counts["token:refresh_token"] == 2


def test_resource_scopes_requested_and_grantable() -> None:
    fake = resource_fake(grantable_scopes={"bob": ["read:items", "other:read"]})
    web = httpx.Client(transport=fake.transport())
    scope = "openid offline_access read:items write:items other:read unknown:scope"
    alice = sign_in_with(web, scope, API, OTHER_API)
    assert alice["scope"] == "openid offline_access"
    api = refresh_for(web, alice["refresh_token"], resource=API).json()
    assert api["scope"] == "read:items write:items"
    other = refresh_for(web, alice["refresh_token"], resource=OTHER_API).json()
    assert decode_access_token(fake, other["access_token"]).claims["aud"] == OTHER_API
    assert other["scope"] == "other:read"

    bob = sign_in_with(web, scope, API, login="bob")
    assert refresh_for(web, bob["refresh_token"], resource=API).json()["scope"] == "read:items"
    fake.grantable_scopes["bob"] = []  # roles are checked again for every token
    empty = refresh_for(web, bob["refresh_token"], resource=API).json()
    assert empty["scope"] == ""
    assert "scope" not in decode_access_token(fake, empty["access_token"]).claims  # like oidc-provider

    # narrowing: only scopes the refresh token carries; without openid there is no ID token
    narrow = refresh_for(web, alice["refresh_token"], resource=API, scope="write:items").json()
    assert narrow["scope"] == "write:items" and "id_token" not in narrow
    wider = refresh_for(web, bob["refresh_token"], resource=API, scope="write:items")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"


def test_resource_not_granted_is_invalid_target() -> None:
    fake = resource_fake(rotate_refresh_token="always")
    web = httpx.Client(transport=fake.transport())
    tokens = sign_in_with(web, "openid offline_access read:items", API)
    for target in (OTHER_API, "https://unknown.example.com"):
        rejected = refresh_for(web, tokens["refresh_token"], resource=target)
        assert rejected.status_code == 400
        assert rejected.json() == {
            "error": "invalid_target",
            "error_description": "resource indicator is missing, or unknown",
        }
        # like oidc-provider, the refresh token was rotated before the resource check:
        # the presented one is used up, and presenting it again revokes the grant
        assert refresh(web, tokens["refresh_token"]).json()["error"] == "invalid_grant"
        tokens = sign_in_with(web, "openid offline_access read:items", API)
    # a resource dropped from the configuration is unknown from then on
    del fake.resources[API]
    assert refresh_for(web, tokens["refresh_token"], resource=API).json()["error"] == "invalid_target"


def test_resource_resolution_quirks() -> None:
    fake = resource_fake()
    web = httpx.Client(transport=fake.transport())
    tokens = sign_in_with(web, "openid offline_access read:items", API)
    # several `resource` values at the token endpoint: Logto resolves them to none
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "resource": [API, OTHER_API]}
    several = web.post(f"{ISSUER}/token", data=data, auth=AUTH)
    assert several.status_code == 200, several.text
    assert "." not in several.json()["access_token"]
    # a scope without openid cannot be for userinfo: the single granted resource is used
    implicit = refresh_for(web, tokens["refresh_token"], scope="read:items").json()
    assert decode_access_token(fake, implicit["access_token"]).claims["aud"] == API
    # the code exchange may ask for the resource directly
    location, verifier = authorize_pairs(web, [("scope", "openid offline_access write:items"), ("resource", API)])
    direct = exchange_location(web, location, verifier, resource=API).json()
    assert direct["scope"] == "write:items" and direct["refresh_token"] and direct["id_token"]
    assert decode_access_token(fake, direct["access_token"]).claims["aud"] == API


def test_authorize_resource_parameter() -> None:
    fake = resource_fake()
    web = httpx.Client(transport=fake.transport())
    scope = "openid offline_access read:items other:read"
    location, verifier = authorize_pairs(web, [("scope", scope), ("resource", f"{API},{OTHER_API}")])
    tokens = exchange_location(web, location, verifier).json()  # Logto splits comma-separated lists
    assert refresh_for(web, tokens["refresh_token"], resource=OTHER_API).json()["scope"] == "other:read"

    for resource, description in [
        ("https://unknown.example.com", "resource indicator is missing, or unknown"),
        ("relative/path", "resource indicator must be an absolute URI"),
        (f"{API}#fragment", "resource indicator must not contain a fragment component"),
    ]:
        query = authorize_pairs(web, [("resource", API), ("resource", resource)])[0].params
        assert query["error"] == "invalid_target"
        assert query["error_description"] == description
        assert query["state"] == "st4te" and query["iss"] == ISSUER
    # other parameters still must not repeat
    _, challenge = pkce()
    repeated = httpx.QueryParams([*auth_params(challenge).items(), ("state", "again")])
    assert web.get(f"{ISSUER}/auth", params=repeated).status_code == 400


def test_login_form_keeps_repeated_resources() -> None:
    fake = resource_fake()
    web = TestClient(fake.app, base_url="http://127.0.0.1:3001", follow_redirects=False)
    verifier, challenge = pkce()
    params: dict[str, Any] = auth_params(challenge, scope="openid offline_access read:items other:read")
    params.update(prompt="consent", resource=[API, OTHER_API])
    page = web.get("/oidc/auth", params=params)
    assert page.status_code == 200
    hidden = re.findall(r"<input type='hidden' name='([^']*)' value='([^']*)'>", page.text)
    assert [v for k, v in hidden if k == "resource"] == [API, OTHER_API]
    form = [(html.unescape(k), html.unescape(v)) for k, v in hidden] + [("login", "alice"), ("action", "login")]
    redirect = web.post(
        "/oidc/auth",
        content=urlencode(form),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert redirect.status_code == 302, redirect.text
    code = httpx.URL(redirect.headers["location"]).params["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
    tokens = web.post("/oidc/token", data=data, auth=AUTH).json()
    for resource, scope in ((API, "read:items"), (OTHER_API, "other:read")):
        body = web.post(
            "/oidc/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "resource": resource},
            auth=AUTH,
        ).json()
        assert body["scope"] == scope


def test_organization_tokens() -> None:
    fake = resource_fake(
        organizations={"alice": ["org-1", "org-2"]},
        organization_scopes=["read:members", "invite:members"],
    )
    web = httpx.Client(transport=fake.transport())
    scope = f"openid offline_access {ORG_SCOPE} read:members read:items"
    tokens = sign_in_with(web, scope, ORG_RESOURCE, API)
    response = refresh_for(web, tokens["refresh_token"], organization_id="org-1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == "read:members" and body["token_type"] == "Bearer"
    token = decode_access_token(fake, body["access_token"])
    assert token.header["typ"] == "at+jwt"
    claims = token.claims
    assert claims["aud"] == "urn:logto:organization:org-1"
    assert claims["scope"] == "read:members"
    assert claims["sub"] == fake.user_claims("alice")["sub"]
    assert "organization_id" not in claims  # Logto adds it only with `resource` as well
    assert userinfo(web, body["access_token"]).status_code == 401

    # an API resource token for an organization carries organization_id
    scoped = refresh_for(web, tokens["refresh_token"], organization_id="org-2", resource=API).json()
    scoped_claims = decode_access_token(fake, scoped["access_token"]).claims
    assert scoped_claims["aud"] == API and scoped_claims["organization_id"] == "org-2"
    assert scoped["scope"] == "read:items"

    # not a member: 403 access_denied, like Logto
    outsider = refresh_for(web, tokens["refresh_token"], organization_id="org-3")
    assert outsider.status_code == 403 and outsider.json()["error"] == "access_denied"
    fake.organizations["alice"].append("org-3")  # memberships are checked live
    assert refresh_for(web, tokens["refresh_token"], organization_id="org-3").status_code == 200


def test_organization_token_needs_the_organizations_scope() -> None:
    fake = resource_fake(organizations={"alice": ["org-1"]}, organization_scopes=["read:members"])
    web = httpx.Client(transport=fake.transport())
    without = sign_in_with(web, "openid offline_access read:members", ORG_RESOURCE)
    response = refresh_for(web, without["refresh_token"], organization_id="org-1")
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    # organization scopes come through urn:logto:resource:organizations only
    plain = sign_in_with(web, f"openid offline_access {ORG_SCOPE} read:members")
    body = refresh_for(web, plain["refresh_token"], organization_id="org-1").json()
    assert body["scope"] == ""
    assert "scope" not in decode_access_token(fake, body["access_token"]).claims


def test_userinfo_logto_claims() -> None:
    fake = resource_fake(organizations={"alice": ["org-1"]})
    web = httpx.Client(transport=fake.transport())
    scope = f"openid profile offline_access custom_data identities {ORG_SCOPE}"
    tokens = sign_in_with(web, scope)
    claims = userinfo(web, tokens["access_token"]).json()
    assert claims["custom_data"] == {} and claims["identities"] == {} and claims["sso_identities"] == []
    assert claims["organizations"] == ["org-1"]
    id_claims = verify(fake, web, tokens["id_token"])
    assert "custom_data" not in id_claims and "identities" not in id_claims  # userinfo only
    assert id_claims["organizations"] == ["org-1"]

    identities = {
        "wechat": {"userId": "wx-1", "details": {"nickname": "Al"}},
        "huggingface": {"userId": "hf-1", "details": {}},
    }
    fake.users["alice"] = {"custom_data": {"plan": "pro"}, "identities": identities}
    claims = userinfo(web, tokens["access_token"]).json()
    assert claims["custom_data"] == {"plan": "pro"}
    assert claims["identities"] == identities

    basic = sign_in_with(web, "openid profile")
    assert not {"custom_data", "identities", "organizations"} & set(userinfo(web, basic["access_token"]).json())


def test_sign_access_token_forgeries(fake: FakeLogto) -> None:
    claims = fake.make_access_token_claims("mallory", API, scope="read:items", exp=1)
    assert claims["aud"] == API and claims["scope"] == "read:items" and claims["exp"] == 1
    assert claims["client_id"] == "fake-client" and claims["iss"] == ISSUER
    assert "scope" not in fake.make_access_token_claims("mallory", API)
    token = decode_access_token(fake, fake.sign_access_token(claims))
    assert token.header == {"alg": "ES384", "typ": "at+jwt", "kid": fake.current_kid}
    assert token.claims == claims
    foreign = ECKey.generate_key("P-384")
    forged = fake.sign_access_token(claims, key=foreign, headers={"typ": "JWT"})
    assert jwt.decode(forged, foreign, algorithms=ES384).header["typ"] == "JWT"
    with pytest.raises(JoseError):
        decode_access_token(fake, forged)


# --------------------------------------------------------------- transports & CLI


def test_async_client(fake: FakeLogto) -> None:
    async def run() -> int:
        async with fake.async_httpx_client() as web:
            response = await web.get("/oidc/jwks")
            return response.status_code

    assert asyncio.run(run()) == 200


def test_transport_only_serves_the_issuer_origin(client: httpx.Client) -> None:
    with pytest.raises(httpx.ConnectError):
        client.get("http://localhost:3001/oidc/jwks")


def test_requests_are_recorded(fake: FakeLogto) -> None:
    with fake.httpx_client() as web:
        web.get("/oidc/jwks", params={"x": "1"})
        sign_in(web)
    assert fake.requests[0] == ("GET", "/oidc/jwks", {"x": "1"})
    assert fake.counts["authorize"] == 1
    assert fake.counts["token:authorization_code"] == 1
    method, path, params = fake.requests[-1]
    assert (method, path, params["grant_type"]) == ("POST", "/oidc/token", "authorization_code")


def test_concurrent_use_from_threads(fake: FakeLogto) -> None:
    transport = fake.transport()

    def flow(_: int) -> str:
        with httpx.Client(transport=transport) as web:
            tokens = sign_in(web)
            return str(refresh(web, tokens["refresh_token"]).json()["access_token"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        access_tokens = list(pool.map(flow, range(32)))
    assert len(set(access_tokens)) == 32
    assert fake.counts["token:refresh_token"] == 32


def test_cli_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "logto_middleware.testing", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--client-secret" in result.stdout and "--redirect-uri" in result.stdout


def test_main_resources_and_organizations(monkeypatch: pytest.MonkeyPatch) -> None:
    served: dict[str, Any] = {}
    monkeypatch.setitem(sys.modules, "uvicorn", types.SimpleNamespace(run=lambda app, **_: served.update(app=app)))
    resources = ["--resource", f"{API}=read:items,write:items", "--resource", "https://x.test="]
    main([*resources, "--organization", "alice=o1,o2"])
    web = TestClient(served["app"], follow_redirects=False)
    tokens = sign_in_with(web, f"openid offline_access {ORG_SCOPE} write:items", API, "https://x.test")
    assert refresh_for(web, tokens["refresh_token"], resource=API).json()["scope"] == "write:items"
    assert refresh_for(web, tokens["refresh_token"], resource="https://x.test").json()["scope"] == ""
    assert refresh_for(web, tokens["refresh_token"], organization_id="o2").status_code == 200
    with pytest.raises(SystemExit):
        main(["--resource", "no-equals-sign"])


def test_main_serves_with_uvicorn(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served: dict[str, Any] = {}

    def run(app: Any, host: str, port: int) -> None:
        served.update(app=app, host=host, port=port)

    monkeypatch.setitem(sys.modules, "uvicorn", types.SimpleNamespace(run=run))
    main(["--port", "3999", "--client-id", "demo"])
    out = capsys.readouterr().out
    assert "http://127.0.0.1:3999/oidc" in out and "demo" in out
    assert "DEVELOPMENT ONLY" in out
    assert served["port"] == 3999
    doc = TestClient(served["app"]).get("/oidc/.well-known/openid-configuration").json()
    assert doc["issuer"] == "http://127.0.0.1:3999/oidc"


def _record_uvicorn(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    served: dict[str, Any] = {}

    def run(app: Any, host: str, port: int) -> None:
        served.update(app=app, host=host, port=port)

    monkeypatch.setitem(sys.modules, "uvicorn", types.SimpleNamespace(run=run))
    return served


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.10", "10.0.0.1", "2001:db8::1",
                                  "example.com", "localhost.evil.example", "::ffff:127.0.0.1"])
def test_main_refuses_to_listen_beyond_loopback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], host: str
) -> None:
    served = _record_uvicorn(monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        main(["--host", host])
    assert exit_.value.code != 0
    err = capsys.readouterr().err
    assert f"refusing to bind --host {host!r}" in err and "--allow-remote" in err
    assert served == {}  # nothing was served


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LocalHost"])
def test_main_listens_on_loopback(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    served = _record_uvicorn(monkeypatch)
    main(["--host", host])
    assert served["host"] == host


def test_main_listens_beyond_loopback_only_when_allowed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served = _record_uvicorn(monkeypatch)
    main(["--host", "0.0.0.0", "--allow-remote", "--port", "3998"])
    assert served["host"] == "0.0.0.0" and served["port"] == 3998
    assert "ANYONE WHO REACHES IT CAN SIGN IN" in capsys.readouterr().out
