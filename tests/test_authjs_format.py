"""session_format="authjs": the Python side of Auth.js cookie interop (the Node side is in
tests/interop/authjs)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from conftest import Clock, Harness

from logto_middleware import LogtoConfigError
from logto_middleware._sessions.authjs import AuthJsCookieStore
from logto_middleware.stores import MemoryStore, RedisStore
from logto_middleware.testing import FakeLogto


def authjs_harness(kind: str, fake: FakeLogto, clock: Clock, **settings: Any) -> Harness:
    return Harness(kind, fake, clock, session_format="authjs", **settings)


def test_sign_in_writes_an_authjs_cookie(kind: str, fake: FakeLogto, clock: Clock) -> None:
    harness = authjs_harness(kind, fake, clock)
    harness.sign_in("alice")
    cookie = harness.client.cookies["authjs.session-token"]
    assert cookie.count(".") == 4  # JWE compact
    store = AuthJsCookieStore(harness.config.secrets, clock=clock)
    token = store.decode(cookie, "authjs.session-token")
    assert token is not None
    claims = fake.user_claims("alice")
    assert token["sub"] == claims["sub"] and token["name"] == claims["name"] and token["picture"] == claims["picture"]
    assert token["access_token"] and token["refresh_token"] and isinstance(token["expires_at"], int)
    assert {"iat", "exp", "jti"} <= set(token)
    assert harness.me()["name"] == claims["name"]


def test_reads_an_authjs_token_with_camel_case_fields(kind: str, fake: FakeLogto, clock: Clock) -> None:
    harness = authjs_harness(kind, fake, clock)
    store = AuthJsCookieStore(harness.config.secrets, clock=clock)
    token = store.encode({"sub": "u9", "name": "Old Guide", "email": "o@example.com", "accessToken": "at-old",
                          "accessTokenExpires": int(clock() + 3600) * 1000, "refreshToken": "rt-old"},
                         "authjs.session-token")
    body = harness.client.get("/", headers={"cookie": f"authjs.session-token={token}"}).json()
    assert body["authenticated"] and body["id"] == "u9" and body["access_token"] == "at-old"


def test_bearer_jwe_is_accepted_like_get_token(kind: str, fake: FakeLogto, clock: Clock) -> None:
    harness = authjs_harness(kind, fake, clock)
    store = AuthJsCookieStore(harness.config.secrets, clock=clock)
    token = store.encode({"sub": "u1", "name": "Ada", "access_token": "at", "expires_at": int(clock()) + 3600},
                         "authjs.session-token")
    response = harness.client.get("/", headers={"authorization": f"Bearer {token}"})
    assert response.json()["authenticated"] is True
    assert response.headers.get_list("set-cookie") == []


def test_refresh_rewrites_the_authjs_cookie(kind: str, fake: FakeLogto, clock: Clock) -> None:
    harness = authjs_harness(kind, fake, clock)
    harness.sign_in("alice")
    clock.advance(fake.access_token_ttl - 30)
    response = harness.client.get("/")
    assert fake.counts["token:refresh_token"] == 1
    written = [c for c in response.headers.get_list("set-cookie") if c.startswith("authjs.session-token=")]
    assert len(written) == 1
    store = AuthJsCookieStore(harness.config.secrets, clock=clock)
    token = store.decode(harness.client.cookies["authjs.session-token"], "authjs.session-token")
    assert token is not None and token["access_token"] == response.json()["access_token"]


def test_wrong_salt_or_secret_or_tampering_is_anonymous(kind: str, fake: FakeLogto, clock: Clock) -> None:
    harness = authjs_harness(kind, fake, clock)
    good = AuthJsCookieStore(harness.config.secrets, clock=clock)
    payload = {"sub": "u1", "access_token": "at", "expires_at": int(clock()) + 3600}
    wrong_salt = good.encode(payload, "__Secure-authjs.session-token")
    wrong_secret = AuthJsCookieStore(["z" * 40], clock=clock).encode(payload, "authjs.session-token")
    valid = good.encode(payload, "authjs.session-token")
    tampered = valid[:-6] + ("AAAAAA" if not valid.endswith("AAAAAA") else "BBBBBB")
    for value in (wrong_salt, wrong_secret, tampered, "garbage", "a.b.c.d.e"):
        response = harness.client.get("/", headers={"cookie": f"authjs.session-token={value}"})
        assert response.json()["authenticated"] is False, value
        assert any("Max-Age=0" in c for c in response.headers.get_list("set-cookie"))


def test_expired_token_within_clock_tolerance(kind: str, fake: FakeLogto, clock: Clock) -> None:
    harness = authjs_harness(kind, fake, clock)
    store = AuthJsCookieStore(harness.config.secrets, clock=clock)
    token = store.encode({"sub": "u1"}, "authjs.session-token", max_age=100)
    clock.advance(110)  # 10 s past exp: inside Auth.js's 15 s tolerance for the JWT
    assert store.decode(token, "authjs.session-token") is not None
    clock.advance(10)
    assert store.decode(token, "authjs.session-token") is None


def test_csrf_cookie_in_authjs_format(kind: str, fake: FakeLogto, clock: Clock) -> None:
    harness = authjs_harness(kind, fake, clock)
    response = harness.client.get("/api/auth/csrf")
    token = response.json()["csrfToken"]
    cookie = harness.client.cookies["authjs.csrf-token"]
    value, digest = cookie.split("|")
    assert value == token
    assert digest == hashlib.sha256(f"{token}{harness.config.secrets[0]}".encode()).hexdigest()
    harness.sign_in("alice")
    signout = harness.client.post("/api/auth/signout", data={"csrfToken": token})
    assert signout.status_code == 302
    assert harness.me()["authenticated"] is False


def test_https_uses_the_secure_cookie_names(kind: str, fake: FakeLogto, clock: Clock) -> None:
    harness = authjs_harness(kind, fake, clock, base_url="https://app.example")
    store = AuthJsCookieStore(harness.config.secrets, clock=clock)
    token = store.encode({"sub": "u1"}, "__Secure-authjs.session-token")
    body = harness.client.get("/", headers={"cookie": f"__Secure-authjs.session-token={token}"}).json()
    assert body["authenticated"] is True
    assert harness.client.get("/api/auth/csrf").headers["set-cookie"].startswith("__Host-authjs.csrf-token=")


def test_refresh_keeps_the_authjs_user_id(kind: str, fake: FakeLogto, clock: Clock) -> None:
    """Auth.js without an adapter puts its own random user id in `sub` and keeps no ID token: a
    refresh must neither compare subjects nor replace the profile."""
    harness = authjs_harness(kind, fake, clock)
    harness.sign_in("alice")
    store = AuthJsCookieStore(harness.config.secrets, clock=clock)
    token = store.decode(harness.client.cookies["authjs.session-token"], "authjs.session-token")
    assert token is not None
    token = {k: v for k, v in token.items() if k not in ("iat", "exp", "jti", "id_token")}
    token["sub"] = "7d9f5f7e-authjs-uuid"
    clock.advance(fake.access_token_ttl - 30)
    cookie = f"authjs.session-token={store.encode(token, 'authjs.session-token')}"
    response = harness.browser().get("/", headers={"cookie": cookie})
    assert response.json()["authenticated"] is True and response.json()["id"] == "7d9f5f7e-authjs-uuid"
    assert fake.counts["token:refresh_token"] == 1
    written = next(c for c in response.headers.get_list("set-cookie") if c.startswith("authjs.session-token="))
    rewritten = store.decode(written.split(";")[0].split("=", 1)[1], "authjs.session-token")
    assert rewritten is not None and rewritten["sub"] == "7d9f5f7e-authjs-uuid"
    assert rewritten["access_token"] == response.json()["access_token"]


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_server_side_store_object_is_refused_not_ignored(kind: str, fake: FakeLogto, clock: Clock,
                                                           store: str) -> None:
    """The configuration refuses session_store with session_format="authjs"; a store given to the
    middleware as an object was silently ignored instead (found running the security suite in
    every mode): the app believed in server-side sign-out and back-channel logout."""
    instance = MemoryStore() if store == "memory" else RedisStore.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(LogtoConfigError, match="server-side store"):
        authjs_harness(kind, fake, clock, store=instance)


def test_a_deeply_nested_header_on_a_deep_stack_is_no_session(clock: Clock) -> None:
    """joserfc turns a header's JSON errors into its own, but not RecursionError: a header of
    760 nested arrays (inside its 1 KB limit) parsed on a deep stack (a big framework's
    middleware chain) must still be no session, not an exception."""
    store = AuthJsCookieStore(["s" * 40], clock=clock)
    token = ".".join([base64.urlsafe_b64encode(b"[" * 760).rstrip(b"=").decode(), "", "aWlpaWlpaWlpaWlpaWlpaQ",
                      "Y2NjY2NjY2NjY2NjY2NjYw", "dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dA"])

    def deep(depth: int) -> dict[str, Any] | None:
        return store.decode(token, "authjs.session-token") if depth == 0 else deep(depth - 1)

    assert deep(400) is None
