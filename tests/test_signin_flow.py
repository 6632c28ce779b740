"""The whole sign-in, session, refresh and sign-out flow, through ASGI and WSGI."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qs, urlsplit

from conftest import ORIGIN, Harness


def test_anonymous_request_passes_through(harness: Harness) -> None:
    body = harness.me()
    assert body["authenticated"] is False
    assert body["id"] is None
    response = harness.client.get("/protected")
    assert response.status_code == 401


def test_signin_redirects_to_provider_with_pkce_state_nonce(harness: Harness) -> None:
    response = harness.start_sign_in(direct_sign_in="social:wechat", callbackUrl="/profile")
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == harness.fake.issuer + "/auth"
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["client_id"] == harness.fake.client_id
    assert query["response_type"] == "code"
    assert query["redirect_uri"] == f"{ORIGIN}/api/auth/callback/logto"
    assert query["scope"] == "openid offline_access profile email"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32 and query["state"] != query["nonce"]
    assert query["prompt"] == "consent"
    assert query["direct_sign_in"] == "social:wechat"
    assert "callbackUrl" not in query
    cookie = response.headers["set-cookie"]
    # One cookie per sign-in, named after its state.
    state_id = hashlib.sha256(query["state"].encode()).hexdigest()[:8]
    assert cookie.startswith(f"logto.transaction.{state_id}=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie and "Max-Age=900" in cookie
    assert response.headers["cache-control"] == "no-store"


def test_full_sign_in_creates_session_with_logto_profile(harness: Harness) -> None:
    callback = harness.sign_in("alice", callbackUrl="/profile")
    assert callback.status_code == 302
    assert callback.headers["location"] == f"{ORIGIN}/profile"
    set_cookies = callback.headers.get_list("set-cookie")
    assert any(c.startswith("logto.session-token=") and "HttpOnly" in c for c in set_cookies)
    assert any(c.startswith("logto.transaction.") and "=;" in c and "Max-Age=0" in c for c in set_cookies)
    body = harness.me()
    claims = harness.fake.user_claims("alice")
    assert body["authenticated"] is True
    assert body["id"] == claims["sub"]
    assert body["name"] == claims["name"]
    assert body["email"] == claims["email"]
    assert body["image"] == claims["picture"]
    assert body["access_token"]
    assert "authenticated" in body["scopes"] and "offline_access" in body["scopes"]
    assert harness.client.get("/protected").status_code == 200
    assert harness.fake.counts["token:authorization_code"] == 1


def test_name_falls_back_to_username(harness: Harness) -> None:
    harness.fake.users["bob"] = {"name": None}
    harness.sign_in("bob")
    body = harness.me()
    assert body["name"] == harness.fake.user_claims("bob")["username"]


def test_callback_url_off_origin_falls_back(harness: Harness) -> None:
    callback = harness.sign_in("alice", callbackUrl="https://evil.example/steal")
    assert callback.headers["location"] == f"{ORIGIN}/"


def test_next_is_an_alias_of_callback_url(harness: Harness) -> None:
    # Django's `login_required` sends `?next=` to `LOGIN_URL`; same-origin rules as callbackUrl.
    assert harness.sign_in("alice", next="/profile?tab=1").headers["location"] == f"{ORIGIN}/profile?tab=1"
    harness.client.cookies.clear()
    assert harness.sign_in("alice", next="//evil.example/x").headers["location"] == f"{ORIGIN}/"
    harness.client.cookies.clear()
    callback = harness.sign_in("alice", callbackUrl="/first", next="/second")
    assert callback.headers["location"] == f"{ORIGIN}/first"


def test_session_endpoint(harness: Harness) -> None:
    response = harness.client.get("/api/auth/session")
    assert response.status_code == 200 and response.json() is None
    assert response.headers["cache-control"] == "no-store"
    harness.sign_in("alice")
    body = harness.client.get("/api/auth/session").json()
    assert body["user"]["id"] == harness.fake.user_claims("alice")["sub"]
    assert set(body["user"]) == {"id", "name", "email", "image"}
    assert body["expires"].endswith("Z")


def test_providers_and_csrf_endpoints(harness: Harness) -> None:
    providers = harness.client.get("/api/auth/providers").json()
    assert providers["logto"]["id"] == "logto"
    assert providers["logto"]["callbackUrl"] == f"{ORIGIN}/api/auth/callback/logto"
    csrf = harness.client.get("/api/auth/csrf")
    assert len(csrf.json()["csrfToken"]) == 64
    assert csrf.headers["cache-control"] == "no-store"
    again = harness.client.get("/api/auth/csrf")
    assert again.json()["csrfToken"] == csrf.json()["csrfToken"]


def test_unknown_route_under_base_is_404_and_wrong_method_405(harness: Harness) -> None:
    assert harness.client.get("/api/auth/nope").status_code == 404
    assert harness.client.post("/api/auth/session").status_code == 405
    # Not under the base path: the app's own route.
    assert harness.client.get("/api/authx").status_code == 200


def test_signout_post_same_origin_ends_session_and_goes_to_end_session(harness: Harness) -> None:
    harness.sign_in("alice")
    response = harness.client.post("/api/auth/signout", headers={"origin": ORIGIN})
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == harness.fake.issuer + "/session/end"
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["client_id"] == harness.fake.client_id
    assert query["post_logout_redirect_uri"] == f"{ORIGIN}/"
    assert query["id_token_hint"].count(".") == 2
    assert any(c.startswith("logto.session-token=;") for c in response.headers.get_list("set-cookie"))
    assert harness.me()["authenticated"] is False
    assert harness.fake.counts["revocation"] == 1


def test_signout_cross_origin_without_csrf_is_refused(harness: Harness) -> None:
    harness.sign_in("alice")
    response = harness.client.post("/api/auth/signout", headers={"origin": "https://evil.example"})
    assert response.status_code == 403
    assert harness.me()["authenticated"] is True
    response = harness.client.post("/api/auth/signout")  # no Origin, no token
    assert response.status_code == 403
    assert harness.me()["authenticated"] is True


def test_signout_with_csrf_token(harness: Harness) -> None:
    harness.sign_in("alice")
    token = harness.client.get("/api/auth/csrf").json()["csrfToken"]
    response = harness.client.post("/api/auth/signout", data={"csrfToken": token})
    assert response.status_code == 302
    assert harness.me()["authenticated"] is False


def test_signout_csrf_token_of_another_browser_fails(harness: Harness) -> None:
    harness.sign_in("alice")
    token_elsewhere = "a" * 64  # a token that is not this browser's
    response = harness.client.post("/api/auth/signout", data={"csrfToken": token_elsewhere})
    assert response.status_code == 403
    assert harness.me()["authenticated"] is True


def test_get_signout_never_signs_out(harness: Harness) -> None:
    harness.sign_in("alice")
    page = harness.client.get("/api/auth/signout")
    assert page.status_code == 200
    assert "<form method=\"post\"" in page.text and "csrfToken" in page.text
    assert harness.me()["authenticated"] is True


def test_app_cookies_are_kept_beside_ours(harness: Harness) -> None:
    harness.sign_in("alice")
    harness.clock.advance(2 * 24 * 3600)  # older than session_update_age: the cookie rolls
    response = harness.client.get("/own-cookie")
    cookies = response.headers.get_list("set-cookie")
    assert any(c.startswith("app-cookie=1") for c in cookies)
    assert any(c.startswith("logto.session-token=") for c in cookies)


def test_own_pages_refuse_framing(harness: Harness) -> None:
    for path in ("/api/auth/signout", "/api/auth/error?error=AccessDenied"):
        response = harness.client.get(path)
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
