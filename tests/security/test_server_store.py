"""Server-side sessions (MemoryStore, RedisStore): the cookie carries an encrypted session id; forged or
foreign ids are anonymous and cleared. Back-channel logout tokens that are forged, unsigned or
meant for someone else end no session."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Clock, Harness
from joserfc.jwk import ECKey, RSAKey

from logto_middleware._protocol.tokens import BACKCHANNEL_LOGOUT_EVENT
from logto_middleware._sessions.cipher import Cipher
from logto_middleware.testing import FakeLogto

from .security_support import (
    SESSION,
    SecretWatch,
    assert_signed_in,
    cookie_header,
    deleted_names,
    jar,
    session_written,
)

OTHER_SECRET = "another-deployment-secret-0123456789abc"

pytestmark = pytest.mark.modes("memory", "redis", reason="a session id cookie and back-channel logout exist only "
                                                         "with a server-side store")



@pytest.fixture
def site(make_harness: Callable[..., Harness], watch: SecretWatch) -> Harness:
    return watch.attach(make_harness())


def signed_in(site: Harness, login: str = "alice") -> str:
    assert_signed_in(site, site.sign_in(login), login)
    return jar(site.client)[SESSION]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- the session-id cookie ----------------------------------------------------------------------

def _flip(value: str, at: int) -> str:
    return value[:at] + ("A" if value[at] != "A" else "B") + value[at + 1:]


ID_TRICKS: dict[str, Callable[[Harness, str], str]] = {
    "tampered": lambda site, v: _flip(v, len(v) // 2),
    "truncated": lambda site, v: v[:20],
    "random_id_sealed_with_foreign_secret": lambda site, v: Cipher([OTHER_SECRET], "session id").encrypt(
        b"guessed-session-id", b"logto.session-id"),
    "id_sealed_with_cookie_store_key": lambda site, v: Cipher(list(site.config.secrets), "session cookie").encrypt(
        b"guessed-session-id", b"logto.session-id"),
    "unknown_id_sealed_with_the_right_key": lambda site, v: Cipher(list(site.config.secrets), "session id").encrypt(
        b"guessed-session-id", b"logto.session-id"),
    "plain_session_id": lambda site, v: "guessed-session-id",
}


@pytest.mark.parametrize("trick", sorted(ID_TRICKS))
def test_forged_session_id_cookie_is_anonymous_and_cleared(site: Harness, watch: SecretWatch, trick: str) -> None:
    value = signed_in(site)
    forged = ID_TRICKS[trick](site, value)
    watch.add(forged)
    attacker = watch.watch_client(site.browser())  # its own jar: the clearing cannot touch the victim's
    response = attacker.get("/", headers=cookie_header([(SESSION, forged)]))
    assert response.status_code == 200
    assert response.json()["authenticated"] is False
    assert session_written(response) == []
    assert SESSION in deleted_names(response)
    assert site.me()["authenticated"] is True  # the genuine session is untouched


def test_cookie_store_session_is_not_a_server_session(make_harness: Callable[..., Harness], watch: SecretWatch) -> None:
    cookie_site = watch.attach(make_harness(store=None))  # the Logto cookie, in the same deployment
    value = signed_in(cookie_site)
    server_site = watch.attach(make_harness())
    response = server_site.client.get("/", headers=cookie_header([(SESSION, value)]))
    assert response.json()["authenticated"] is False
    assert SESSION in deleted_names(response)


# -- back-channel logout ------------------------------------------------------------------------

def logout_claims(fake: FakeLogto, **changes: Any) -> dict[str, Any]:
    return fake.make_logout_token_claims("alice", **changes)


def _hs256(fake: FakeLogto, claims: dict[str, Any]) -> str:
    public = next(k for k in fake.jwks()["keys"] if k["kid"] == fake.current_kid)
    pem = ECKey.import_key(public).as_pem(private=False)
    header = b64(json.dumps({"alg": "HS256", "kid": fake.current_kid}).encode())
    payload = b64(json.dumps(claims).encode())
    tag = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(tag)}"


def _rs256_served(fake: FakeLogto, claims: dict[str, Any]) -> str:
    rsa = RSAKey.generate_key(2048, {"alg": "RS256", "use": "sig"}, auto_kid=True)
    fake.jwks_override = {"keys": [*fake.jwks()["keys"], rsa.as_dict(private=False)]}
    return fake.sign_id_token(claims, alg="RS256", key=rsa, kid=rsa.kid)


LOGOUT_FORGERIES: dict[str, Callable[[FakeLogto, Clock], str]] = {
    "foreign_key": lambda fake, clock: fake.sign_logout_token(logout_claims(fake),
                                                          key=ECKey.generate_key("P-384", {"alg": "ES384"})),
    "alg_none": lambda fake, clock: fake.sign_logout_token(logout_claims(fake), alg="none"),
    "hs256_keyed_with_public_pem": lambda fake, clock: _hs256(fake, logout_claims(fake)),
    "rs256_with_served_rsa_key": lambda fake, clock: _rs256_served(fake, logout_claims(fake)),
    "an_id_token_not_a_logout_token": lambda fake, clock: fake.sign_id_token(fake.make_id_token_claims("alice")),
    "other_client": lambda fake, clock: fake.sign_logout_token(logout_claims(fake, aud="other-client")),
    "other_issuer": lambda fake, clock: fake.sign_logout_token(logout_claims(fake, iss="https://evil.example/oidc")),
    "issued_in_the_future": lambda fake, clock: fake.sign_logout_token(logout_claims(fake, iat=int(clock()) + 3600)),
    "events_wrong_type": lambda fake, clock: fake.sign_logout_token(logout_claims(
        fake, events={BACKCHANNEL_LOGOUT_EVENT: "yes"})),
    "oversized": lambda fake, clock: fake.sign_logout_token(logout_claims(fake, pad="x" * 20_000)),
    "jwe": lambda fake, clock: "a.b.c.d.e",
    "empty": lambda fake, clock: "",
    "garbage": lambda fake, clock: "<script>alert(1)</script>",
}


@pytest.mark.parametrize("forgery", sorted(LOGOUT_FORGERIES))
def test_forged_logout_token_ends_no_session(site: Harness, watch: SecretWatch, forgery: str) -> None:
    signed_in(site)
    token = LOGOUT_FORGERIES[forgery](site.fake, site.clock)
    watch.add(token)
    response = site.client.post("/api/auth/backchannel-logout", data={"logout_token": token},
                                headers={"cookie": ""})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert b"<script" not in response.content
    assert site.me()["authenticated"] is True


def test_logout_token_for_one_user_leaves_others_signed_in(site: Harness, watch: SecretWatch) -> None:
    signed_in(site, "alice")
    bob = watch.watch_client(site.browser())
    callback = site.fake.authorize(bob.get("/api/auth/signin").headers["location"], login="bob")
    assert session_written(bob.get(callback))
    token = site.fake.sign_logout_token(logout_claims(site.fake))  # alice's sub
    response = bob.post("/api/auth/backchannel-logout", data={"logout_token": token})
    assert response.status_code == 200
    assert site.me()["authenticated"] is False
    assert bob.get("/").json()["authenticated"] is True
