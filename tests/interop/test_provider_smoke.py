"""The interop OP itself behaves like Logto, driven by a plain httpx client."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from logto_middleware import LogtoConfig, LogtoWSGIMiddleware
from logto_middleware.stores import MemoryStore

from .provider import OidcProviderProcess

SCOPE = "openid offline_access profile email"


def _b64url_json(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return value


def verify(op: OidcProviderProcess, token: str) -> jwt.Token:
    """Verify an ES384 JWT against the provider's JWKS.

    joserfc only accepts its "recommended" algorithms unless told otherwise, and
    ES384 is not one of them: ``algorithms=["ES384"]`` is required.
    """
    keys = KeySet.import_key_set(httpx.get(op.jwks_uri, timeout=5.0).json())
    return jwt.decode(token, keys, algorithms=["ES384"])


def basic_auth(client_id: str, client_secret: str) -> dict[str, str]:
    """RFC 6749 2.3.1: form-urlencode id and secret, then base64 "id:secret"."""
    pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def authorize(
    op: OidcProviderProcess,
    client: httpx.Client,
    *,
    username: str = "alice",
    scope: str = SCOPE,
    prompt: str | None = "consent",
    resource: str | None = None,
) -> dict[str, Any]:
    """Run the front channel; return code, verifier, nonce, state and the callback URL."""
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    params = {
        "response_type": "code",
        "client_id": op.client_id,
        "redirect_uri": op.redirect_uris[0],
        "scope": scope,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if prompt:
        params["prompt"] = prompt
    if resource:
        params["resource"] = resource
    callback = op.login(client, f"{op.authorization_endpoint}?{urlencode(params)}", username)
    assert callback.startswith(op.redirect_uris[0] + "?"), callback
    query = {key: values[0] for key, values in parse_qs(urlsplit(callback).query).items()}
    assert "error" not in query, query
    assert query["state"] == state
    assert query["iss"] == op.issuer  # RFC 9207
    return {"code": query["code"], "verifier": verifier, "nonce": nonce, "callback": callback}


def token_request(op: OidcProviderProcess, **form: str) -> httpx.Response:
    return httpx.post(
        op.token_endpoint,
        data=form,
        headers=basic_auth(op.client_id, op.client_secret),
        timeout=10.0,
    )


def exchange(op: OidcProviderProcess, flow: dict[str, Any]) -> dict[str, Any]:
    response = token_request(
        op,
        grant_type="authorization_code",
        code=flow["code"],
        redirect_uri=op.redirect_uris[0],
        code_verifier=flow["verifier"],
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def refresh(op: OidcProviderProcess, refresh_token: str) -> httpx.Response:
    return token_request(op, grant_type="refresh_token", refresh_token=refresh_token)


def test_discovery_looks_like_logto(oidc_provider: OidcProviderProcess) -> None:
    meta = oidc_provider.discovery()
    assert meta["issuer"] == oidc_provider.issuer
    assert meta["issuer"].endswith("/oidc")
    assert meta["issuer"].startswith("http://127.0.0.1:")
    assert meta["id_token_signing_alg_values_supported"] == ["ES384"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["response_types_supported"] == ["code"]
    assert set(meta["scopes_supported"]) == {"openid", "offline_access", "profile", "email"}
    for claim in ("name", "username", "picture", "email", "email_verified"):
        assert claim in meta["claims_supported"]
    for key in ("end_session_endpoint", "revocation_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert meta[key].startswith(oidc_provider.issuer + "/")
    jwks = httpx.get(meta["jwks_uri"], timeout=5.0).json()
    assert [(k["kty"], k["crv"], k.get("alg")) for k in jwks["keys"]] == [("EC", "P-384", "ES384")]
    assert jwks["keys"][0]["kid"]
    assert "d" not in jwks["keys"][0]


def test_code_flow_refresh_rotation_and_reuse(oidc_provider: OidcProviderProcess) -> None:
    op = oidc_provider
    op.reset_stats()
    with httpx.Client(timeout=10.0) as browser:
        flow = authorize(op, browser, username="alice")
    tokens = exchange(op, flow)

    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] <= 60
    assert set(tokens["scope"].split()) == set(SCOPE.split())
    assert tokens["refresh_token"] and tokens["id_token"]
    assert tokens["access_token"].count(".") == 0  # opaque

    header = _b64url_json(tokens["id_token"].split(".")[0])
    assert header["alg"] == "ES384"
    keys = KeySet.import_key_set(httpx.get(op.jwks_uri, timeout=5.0).json())
    assert header["kid"] == keys.keys[0].kid
    id_token = jwt.decode(tokens["id_token"], keys, algorithms=["ES384"])
    claims = id_token.claims
    assert claims["iss"] == op.issuer
    assert claims["aud"] == op.client_id
    assert claims["nonce"] == flow["nonce"]
    assert claims["sub"] == "alice"
    assert claims["name"] == "Alice"
    assert claims["username"] == "alice"
    assert claims["email"] == "alice@example.com"
    assert claims["email_verified"] is True
    assert claims["picture"].startswith("https://")
    # oidc-provider only puts `sid` into ID tokens for clients with
    # backchannel_logout_session_required (see the back-channel test)
    assert "sid" not in claims

    userinfo = httpx.get(
        op.userinfo_endpoint,
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=5.0,
    )
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["email"] == "alice@example.com"

    first = refresh(op, tokens["refresh_token"])
    assert first.status_code == 200, first.text
    rotated = first.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]  # rotated on every use
    assert rotated["access_token"] != tokens["access_token"]
    assert _b64url_json(rotated["id_token"].split(".")[0])["alg"] == "ES384"

    reuse = refresh(op, tokens["refresh_token"])
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    # oidc-provider treats reuse as token theft and revokes the whole grant
    after_reuse = refresh(op, rotated["refresh_token"])
    assert after_reuse.status_code == 400
    assert after_reuse.json()["error"] == "invalid_grant"

    stats = op.stats()
    assert stats["logins"] == 1
    assert stats["authorizations"] == 1
    assert stats["grants"]["authorization_code"] == 1
    assert stats["grant_errors"]["authorization_code"] == 0
    assert stats["grants"]["refresh_token"] == 1
    assert stats["refresh_token_success"] == 1
    assert stats["refresh_token_errors"] == 2
    assert stats["refresh_token_error_codes"] == {"invalid_grant": 2}
    assert stats["refresh_token_outcomes"] == ["success", "invalid_grant", "invalid_grant"]
    assert stats["token_requests"] == 4
    op.reset_stats()
    assert op.stats()["grants"] == {"authorization_code": 0, "refresh_token": 0}


def test_offline_access_needs_prompt_consent(oidc_provider: OidcProviderProcess) -> None:
    op = oidc_provider
    with httpx.Client(timeout=10.0) as browser:
        flow = authorize(op, browser, username="bob", prompt=None)
        tokens = exchange(op, flow)
        assert "refresh_token" not in tokens
        assert "offline_access" not in tokens["scope"].split()
        # same browser: the provider session exists, consent is granted without a form
        again = authorize(op, browser, username="ignored", prompt="consent")
    tokens = exchange(op, again)
    assert tokens["refresh_token"]
    assert verify(op, tokens["id_token"]).claims["sub"] == "bob"


def test_pkce_and_client_secret_are_enforced(oidc_provider: OidcProviderProcess) -> None:
    op = oidc_provider
    with httpx.Client(timeout=10.0) as browser:
        no_pkce = op.login(
            browser,
            f"{op.authorization_endpoint}?"
            + urlencode(
                {
                    "response_type": "code",
                    "client_id": op.client_id,
                    "redirect_uri": op.redirect_uris[0],
                    "scope": "openid",
                    "state": "s",
                }
            ),
        )
    query = parse_qs(urlsplit(no_pkce).query)
    assert query["error"] == ["invalid_request"]
    assert query["iss"] == [op.issuer]

    with httpx.Client(timeout=10.0) as browser:
        flow = authorize(op, browser, username="carol")
    bad_secret = httpx.post(
        op.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": flow["code"],
            "redirect_uri": op.redirect_uris[0],
            "code_verifier": flow["verifier"],
        },
        headers=basic_auth(op.client_id, "wrong"),
        timeout=10.0,
    )
    assert bad_secret.status_code == 401 and bad_secret.json()["error"] == "invalid_client"
    wrong_verifier = token_request(
        op,
        grant_type="authorization_code",
        code=flow["code"],
        redirect_uri=op.redirect_uris[0],
        code_verifier=pkce_pair()[0],
    )
    assert wrong_verifier.status_code == 400 and wrong_verifier.json()["error"] == "invalid_grant"

    # the right verifier still works after a failed attempt ...
    tokens = exchange(op, flow)
    # ... and the code is single-use: a replay is refused and revokes the grant
    replay = token_request(
        op,
        grant_type="authorization_code",
        code=flow["code"],
        redirect_uri=op.redirect_uris[0],
        code_verifier=flow["verifier"],
    )
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert refresh(op, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_revocation_and_rp_initiated_logout(oidc_provider: OidcProviderProcess) -> None:
    op = oidc_provider
    op.reset_stats()
    with httpx.Client(timeout=10.0) as browser:
        tokens = exchange(op, authorize(op, browser, username="dave"))
        revoked = httpx.post(
            op.revocation_endpoint,
            data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
            headers=basic_auth(op.client_id, op.client_secret),
            timeout=10.0,
        )
        assert revoked.status_code == 200, revoked.text
        assert refresh(op, tokens["refresh_token"]).json()["error"] == "invalid_grant"

        tokens = exchange(op, authorize(op, browser, username="dave"))
        post_logout = op.post_logout_redirect_uris[0]
        end_session = f"{op.end_session_endpoint}?" + urlencode(
            {
                "id_token_hint": tokens["id_token"],
                "post_logout_redirect_uri": post_logout,
                "state": "bye",
            }
        )
        landed = op.logout(browser, end_session)
        assert landed == f"{post_logout}?state=bye"
        # oidc-provider quirk: a grant that includes offline_access survives
        # end-session (expiresWithSession is false for it), so the refresh token
        # still works; an RP must revoke it itself when signing out.
        survived = refresh(op, tokens["refresh_token"])
        assert survived.status_code == 200, survived.text
        # and the provider session is gone: the next authorization shows the login form again
        page = browser.get(
            f"{op.authorization_endpoint}?"
            + urlencode(
                {
                    "response_type": "code",
                    "client_id": op.client_id,
                    "redirect_uri": op.redirect_uris[0],
                    "scope": "openid",
                    "code_challenge": pkce_pair()[1],
                    "code_challenge_method": "S256",
                }
            ),
            follow_redirects=True,
        )
        assert 'name="login"' in page.text

    stats = op.stats()
    assert stats["grants"]["refresh_token"] == 1
    assert stats["revocations"] == 1 and stats["revocation_errors"] == 0
    assert stats["end_session"] == 1
    assert stats["end_session_confirm"] == 1
    assert stats["end_session_success"] == 1
    # stdout stays machine-readable: only the READY line, no secrets
    assert op.stdout == f"READY {op.issuer}\n"
    assert op.client_secret not in op.stdout + op.stderr


class _LogoutTokenSink(BaseHTTPRequestHandler):
    received: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        body = parse_qs(self.rfile.read(length).decode())
        type(self).received.append(body["logout_token"][0])
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def logout_sink() -> Iterator[tuple[str, list[str]]]:
    received: list[str] = []
    handler = type("Sink", (_LogoutTokenSink,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/backchannel", received
    finally:
        server.shutdown()
        server.server_close()


def test_backchannel_logout_trigger(oidc_provider_factory: Any, logout_sink: Any) -> None:
    uri, received = logout_sink
    op = oidc_provider_factory(backchannel_logout_uri=uri)
    assert op.discovery()["backchannel_logout_supported"] is True
    with httpx.Client(timeout=10.0) as browser:
        tokens = exchange(op, authorize(op, browser, username="erin"))
    keys = KeySet.import_key_set(httpx.get(op.jwks_uri, timeout=5.0).json())
    sid = jwt.decode(tokens["id_token"], keys, algorithms=["ES384"]).claims["sid"]

    response = op.trigger_backchannel_logout("erin")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "sent", "sub": "erin", "sid": sid}
    assert len(received) == 1
    logout_token = jwt.decode(received[0], keys, algorithms=["ES384"])
    assert logout_token.header["alg"] == "ES384"
    assert logout_token.header.get("typ") == "logout+jwt"
    claims = logout_token.claims
    assert claims["iss"] == op.issuer and claims["aud"] == op.client_id
    assert claims["sub"] == "erin" and claims["sid"] == sid
    assert "http://schemas.openid.net/event/backchannel-logout" in claims["events"]
    assert "nonce" not in claims
    assert claims["exp"] - claims["iat"] == 120  # oidc-provider's fixed logout-token lifetime
    assert op.stats()["backchannel_logout_sent"] == 1

    # The middleware accepts the real token once (its keys fetched from the provider) and
    # refuses the replay.
    config = LogtoConfig(issuer=op.issuer, client_id=op.client_id, client_secret=op.client_secret,
                         secret="interop-secret-0123456789-abcdefghijklmnop")
    app = LogtoWSGIMiddleware(lambda environ, start_response: [], config, store=MemoryStore())
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://127.0.0.1") as rp:
        accepted = rp.post("/api/auth/backchannel-logout", data={"logout_token": received[0]})
        assert accepted.status_code == 200, accepted.text
        replay = rp.post("/api/auth/backchannel-logout", data={"logout_token": received[0]})
        assert replay.status_code == 400 and "replayed" in replay.json()["error_description"]


# ---------------------------------------------------------------------------
# API resources (RFC 8707), configured like Logto


def _authorization_error(op: OidcProviderProcess, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": op.client_id,
        "redirect_uri": op.redirect_uris[0],
        "scope": "openid offline_access",
        "state": "st",
        "code_challenge": pkce_pair()[1],
        "code_challenge_method": "S256",
        "prompt": "consent",
        **extra,
    }
    with httpx.Client(timeout=10.0) as browser:
        callback = op.login(browser, f"{op.authorization_endpoint}?{urlencode(params)}")
    assert callback.startswith(op.redirect_uris[0] + "?"), callback
    return {key: values[0] for key, values in parse_qs(urlsplit(callback).query).items()}


def test_api_resource_gets_a_jwt_access_token(oidc_provider: OidcProviderProcess) -> None:
    op = oidc_provider
    op.reset_stats()
    indicator = op.resource_indicator
    assert indicator == "https://api.interop.test"
    with httpx.Client(timeout=10.0) as browser:
        flow = authorize(op, browser, username="frank", scope="openid offline_access read:items", resource=indicator)
    tokens = exchange(op, flow)
    # the code exchange without `resource` is for userinfo: opaque, OIDC scopes only
    assert tokens["access_token"].count(".") == 0
    assert set(tokens["scope"].split()) == {"openid", "offline_access"}
    userinfo = httpx.get(
        op.userinfo_endpoint, headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=5.0
    )
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["sub"] == "frank"

    response = token_request(
        op, grant_type="refresh_token", refresh_token=tokens["refresh_token"], resource=indicator
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "read:items"
    assert 0 < body["expires_in"] <= op.access_token_ttl
    assert body["refresh_token"] != tokens["refresh_token"]  # rotated as usual
    assert body["id_token"]  # oidc-provider (and Logto) still issue one: the refresh token has openid

    access_token = body["access_token"]
    header = _b64url_json(access_token.split(".")[0])
    assert header["alg"] == "ES384"
    assert header["typ"] == "at+jwt"
    verified = verify(op, access_token)  # the provider's JWKS, algorithms=["ES384"]
    assert verified.header["kid"] == header["kid"]
    claims = verified.claims
    assert claims["aud"] == indicator
    assert "read:items" in claims["scope"].split()
    assert claims["scope"] == "read:items"  # write:items was not requested
    assert claims["iss"] == op.issuer
    assert claims["sub"] == "frank"
    assert claims["client_id"] == op.client_id
    assert claims["exp"] - claims["iat"] == op.access_token_ttl
    assert claims["jti"]

    # a resource JWT is not a userinfo token
    refused = httpx.get(op.userinfo_endpoint, headers={"Authorization": f"Bearer {access_token}"}, timeout=5.0)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token"

    # the rotated refresh token still gets the session's own opaque token
    own = refresh(op, body["refresh_token"])
    assert own.status_code == 200, own.text
    assert own.json()["access_token"].count(".") == 0
    assert set(own.json()["scope"].split()) == {"openid", "offline_access"}
    stats = op.stats()
    assert stats["resource_grants"] == {indicator: 1}
    assert stats["grants"]["refresh_token"] == 2


def test_unknown_resource_is_invalid_target(oidc_provider: OidcProviderProcess) -> None:
    op = oidc_provider
    query = _authorization_error(op, resource="https://unknown.interop.test")
    assert query["error"] == "invalid_target"
    assert query["iss"] == op.issuer and query["state"] == "st"
    assert "code" not in query
    assert _authorization_error(op, resource="not-an-uri")["error"] == "invalid_target"

    for resource in ("https://unknown.interop.test", op.resource_indicator):
        # `resource` was not asked for at authorization: only OIDC scopes are granted
        with httpx.Client(timeout=10.0) as browser:
            flow = authorize(op, browser, username="grace", scope="openid offline_access read:items")
        tokens = exchange(op, flow)
        rejected = token_request(
            op, grant_type="refresh_token", refresh_token=tokens["refresh_token"], resource=resource
        )
        assert rejected.status_code == 400, rejected.text
        assert rejected.json()["error"] == "invalid_target"
        # oidc-provider quirk: the refresh token was rotated before the resource was
        # checked, so the one presented is used up; presenting it again is reuse, which
        # revokes the grant
        reused = refresh(op, tokens["refresh_token"])
        assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"


def test_resource_options(oidc_provider_factory: Any) -> None:
    op = oidc_provider_factory(
        resource_indicator="https://custom.interop.test/api", resource_scopes="a:read, a:write", access_token_ttl=5
    )
    assert op.resource_scopes == ("a:read", "a:write")
    with httpx.Client(timeout=10.0) as browser:
        scope = "openid offline_access a:write read:items"  # read:items is not this resource's
        flow = authorize(op, browser, username="heidi", scope=scope, resource=op.resource_indicator)
    tokens = exchange(op, flow)
    body = token_request(
        op, grant_type="refresh_token", refresh_token=tokens["refresh_token"], resource=op.resource_indicator
    ).json()
    claims = verify(op, body["access_token"]).claims
    assert claims["aud"] == "https://custom.interop.test/api"
    assert claims["scope"] == "a:write"
    assert claims["exp"] - claims["iat"] == 5
    # the default indicator is not configured on this provider
    assert _authorization_error(op, resource="https://api.interop.test")["error"] == "invalid_target"
