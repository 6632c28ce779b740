"""Forged, tampered and malformed ID tokens at the callback (and on refresh).

Each token is swapped into the provider's token response (the fake's `token_response_hook`)
for one signed here, with the nonce of the real authorization request, so the only thing wrong
with it is the defect under test. Positive controls prove the forging itself works.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Clock, Harness
from joserfc import jwe
from joserfc.jwk import ECKey, Key, RSAKey

from logto_middleware.testing import FakeLogto

from .security_support import (
    SecretWatch,
    assert_rejected_callback,
    assert_signed_in,
    begin_sign_in,
    forged_sign_in,
    new_client,
    session_written,
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def claims(fake: FakeLogto, nonce: str | None, **overrides: Any) -> dict[str, Any]:
    return fake.make_id_token_claims("alice", nonce=nonce, **overrides)


def hmac_token(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """An HS256 JWS built by hand (joserfc rightly refuses public keys as HMAC secrets)."""
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    tag = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(tag)}"


def public_jwk(fake: FakeLogto) -> dict[str, Any]:
    return next(k for k in fake.jwks()["keys"] if k["kid"] == fake.current_kid)


def public_pem(fake: FakeLogto) -> bytes:
    return ECKey.import_key(public_jwk(fake)).as_pem(private=False)


def serve_extra_keys(fake: FakeLogto, *keys: Key) -> None:
    """Publish `keys` in the JWKS beside the provider's own."""
    fake.jwks_override = {"keys": [*fake.jwks()["keys"], *(k.as_dict(private=False) for k in keys)]}


def warm_up(site: Harness, watch: SecretWatch) -> None:
    """An honest sign-in in another browser: discovery and JWKS are now cached."""
    other = watch.watch_client(new_client(site))
    callback = site.fake.authorize(other.get("/api/auth/signin").headers["location"], login="bob")
    assert session_written(other.get(callback))


# -- positive controls: the forging harness produces tokens the middleware accepts ------------

def test_control_genuine_token_swapped_in_is_accepted(site: Harness, watch: SecretWatch) -> None:
    response = forged_sign_in(site, watch, lambda nonce, body: site.fake.sign_id_token(claims(site.fake, nonce)))
    assert_signed_in(site, response)


def test_control_rs256_accepted_when_allowed(make_harness: Callable[..., Harness], watch: SecretWatch) -> None:
    site = watch.attach(make_harness(id_token_algorithms=("ES384", "RS256")))
    rsa = RSAKey.generate_key(2048, {"alg": "RS256", "use": "sig"}, auto_kid=True)
    serve_extra_keys(site.fake, rsa)
    response = forged_sign_in(site, watch, lambda nonce, body: site.fake.sign_id_token(
        claims(site.fake, nonce), alg="RS256", key=rsa, kid=rsa.kid))
    assert_signed_in(site, response)


def test_control_correct_at_hash_accepted(site: Harness, watch: SecretWatch) -> None:
    def forge(nonce: str, body: dict[str, Any]) -> str:
        digest = hashlib.sha384(body["access_token"].encode()).digest()
        return site.fake.sign_id_token(claims(site.fake, nonce, at_hash=b64(digest[:24])))

    assert_signed_in(site, forged_sign_in(site, watch, forge))


def test_control_exp_within_clock_skew_accepted(site: Harness, watch: SecretWatch, clock: Clock) -> None:
    now = int(clock())
    response = forged_sign_in(site, watch, lambda nonce, body: site.fake.sign_id_token(
        claims(site.fake, nonce, exp=now - 30, iat=now - 3600)))
    assert_signed_in(site, response)


# -- forgeries: each one ends on the Verification error page, without a session --------------

def _foreign_key(fake: FakeLogto, nonce: str, body: dict[str, Any]) -> str:
    return fake.sign_id_token(claims(fake, nonce), key=ECKey.generate_key("P-384", {"alg": "ES384"}))


def _tampered_payload(fake: FakeLogto, nonce: str, body: dict[str, Any]) -> str:
    header, _, signature = fake.sign_id_token(claims(fake, nonce)).split(".")
    return f"{header}.{b64json(claims(fake, nonce, sub='admin'))}.{signature}"


def _signature_of_another_token(fake: FakeLogto, nonce: str, body: dict[str, Any]) -> str:
    header, payload, _ = fake.sign_id_token(claims(fake, nonce, sub="admin")).split(".")
    other_signature = fake.sign_id_token(claims(fake, nonce)).split(".")[2]
    return f"{header}.{payload}.{other_signature}"


def _alg_none(fake: FakeLogto, nonce: str, body: dict[str, Any]) -> str:
    return fake.sign_id_token(claims(fake, nonce), alg="none")


def _alg_none_upper(fake: FakeLogto, nonce: str, body: dict[str, Any]) -> str:
    return f"{b64json({'alg': 'NONE', 'kid': fake.current_kid})}.{b64json(claims(fake, nonce))}."


def _alg_none_with_genuine_signature(fake: FakeLogto, nonce: str, body: dict[str, Any]) -> str:
    signature = fake.sign_id_token(claims(fake, nonce)).split(".")[2]
    return f"{b64json({'alg': 'none', 'kid': fake.current_kid})}.{b64json(claims(fake, nonce))}.{signature}"


def _hs256_public_jwk(fake: FakeLogto, nonce: str, body: dict[str, Any]) -> str:
    secret = json.dumps(public_jwk(fake)).encode()
    return hmac_token({"alg": "HS256", "typ": "JWT", "kid": fake.current_kid}, claims(fake, nonce), secret)


def _hs256_public_pem(fake: FakeLogto, nonce: str, body: dict[str, Any]) -> str:
    return hmac_token({"alg": "HS256", "typ": "JWT", "kid": fake.current_kid}, claims(fake, nonce), public_pem(fake))


def _hs256_no_kid_public_pem(fake: FakeLogto, nonce: str, body: dict[str, Any]) -> str:
    return hmac_token({"alg": "HS256", "typ": "JWT"}, claims(fake, nonce), public_pem(fake))


def _embedded_jwk_header(fake: FakeLogto, nonce: str, body: dict[str, Any]) -> str:
    # The attacker's own key, embedded in the header (RFC 7515 `jwk`): it must never be used.
    attacker = ECKey.generate_key("P-384", {"alg": "ES384"}, auto_kid=True)
    return fake.sign_id_token(claims(fake, nonce), key=attacker, kid=attacker.kid,
                              headers={"jwk": attacker.as_dict(private=False)})


def _jku_header(fake: FakeLogto, nonce: str, body: dict[str, Any]) -> str:
    attacker = ECKey.generate_key("P-384", {"alg": "ES384"}, auto_kid=True)
    return fake.sign_id_token(claims(fake, nonce), key=attacker, kid=attacker.kid,
                              headers={"jku": "https://evil.example/jwks"})


def _kid_not_a_string(fake: FakeLogto, nonce: str, body: dict[str, Any]) -> str:
    # joserfc will not sign such a header; the middleware must refuse it before any key lookup.
    _, payload, signature = fake.sign_id_token(claims(fake, nonce)).split(".")
    return f"{b64json({'alg': 'ES384', 'typ': 'JWT', 'kid': 7})}.{payload}.{signature}"


def _claim(**overrides: Any) -> Callable[[FakeLogto, str, dict[str, Any]], str]:
    def forge(fake: FakeLogto, nonce: str, body: dict[str, Any]) -> str:
        now = int(fake.clock())
        values = {k: (v(now) if callable(v) else v) for k, v in overrides.items()}
        return fake.sign_id_token(claims(fake, values.pop("nonce", nonce), **values))
    return forge


def _no_nonce(fake: FakeLogto, nonce: str, body: dict[str, Any]) -> str:
    return fake.sign_id_token(claims(fake, None))


def _at_hash_mismatch(fake: FakeLogto, nonce: str, body: dict[str, Any]) -> str:
    digest = hashlib.sha384(b"another access token").digest()
    return fake.sign_id_token(claims(fake, nonce, at_hash=b64(digest[:24])))


def _oversized(fake: FakeLogto, nonce: str, body: dict[str, Any]) -> str:
    return fake.sign_id_token(claims(fake, nonce, padding="x" * 20_000))


def _jwe(fake: FakeLogto, nonce: str, body: dict[str, Any]) -> str:
    recipient = ECKey.generate_key("P-384")
    payload = json.dumps(claims(fake, nonce)).encode()
    return jwe.encrypt_compact({"alg": "ECDH-ES", "enc": "A256GCM", "kid": fake.current_kid}, payload, recipient)


def _genuine_then(change: Callable[[str], str]) -> Callable[[FakeLogto, str, dict[str, Any]], str]:
    def forge(fake: FakeLogto, nonce: str, body: dict[str, Any]) -> str:
        return change(fake.sign_id_token(claims(fake, nonce)))
    return forge


FORGERIES: dict[str, Callable[[FakeLogto, str, dict[str, Any]], str]] = {
    "bad_signature_foreign_key": _foreign_key,
    "tampered_payload": _tampered_payload,
    "signature_of_another_token": _signature_of_another_token,
    "alg_none": _alg_none,
    "alg_NONE": _alg_none_upper,
    "alg_none_with_genuine_signature": _alg_none_with_genuine_signature,
    "hs256_keyed_with_public_jwk": _hs256_public_jwk,
    "hs256_keyed_with_public_pem": _hs256_public_pem,
    "hs256_no_kid_keyed_with_public_pem": _hs256_no_kid_public_pem,
    "embedded_jwk_header": _embedded_jwk_header,
    "jku_header": _jku_header,
    "kid_not_a_string": _kid_not_a_string,
    "wrong_iss": _claim(iss="https://evil.example/oidc"),
    "iss_with_trailing_slash": _claim(iss=FakeLogto().issuer + "/"),
    "aud_other_client": _claim(aud="other-client"),
    "aud_missing": _claim(aud=None),
    "aud_list_without_client": _claim(aud=["other-client", "third-client"]),
    "several_audiences_no_azp": _claim(aud=["fake-client", "other-client"]),
    "several_audiences_azp_other": _claim(aud=["fake-client", "other-client"], azp="other-client"),
    "azp_other_client": _claim(azp="other-client"),
    "token_of_other_client_same_issuer": _claim(aud="other-client", azp="other-client"),
    "expired_exp": _claim(exp=lambda now: now - 3600, iat=lambda now: now - 7200),
    "exp_just_past_skew": _claim(exp=lambda now: now - 61, iat=lambda now: now - 3600),
    "exp_missing": _claim(exp=None),
    "exp_not_a_number": _claim(exp="9999999999"),
    "iat_in_future": _claim(iat=lambda now: now + 3600, exp=lambda now: now + 7200),
    "iat_just_past_skew": _claim(iat=lambda now: now + 61),
    "iat_missing": _claim(iat=None),
    "nbf_in_future": _claim(nbf=lambda now: now + 3600),
    "sub_missing": _claim(sub=None),
    "sub_empty": _claim(sub=""),
    "nonce_missing": _no_nonce,
    "nonce_wrong": _claim(nonce="not-the-nonce-of-this-sign-in"),
    "nonce_not_a_string": _claim(nonce=12345),
    "nonce_not_ascii": _claim(nonce="n\u00f6nce"),  # signed by a hostile provider: refused, not a 500
    "at_hash_mismatch": _at_hash_mismatch,
    "at_hash_not_ascii": _claim(at_hash="h\u00e4sh"),
    "oversized": _oversized,
    "jwe_five_segments": _jwe,
    "malformed_two_segments": _genuine_then(lambda t: t.rsplit(".", 1)[0]),
    "malformed_four_segments": _genuine_then(lambda t: t + ".AAAA"),
    "malformed_empty_signature": _genuine_then(lambda t: t.rsplit(".", 1)[0] + "."),
    "malformed_empty_header": _genuine_then(lambda t: "." + t.split(".", 1)[1]),
    "malformed_header_not_base64": _genuine_then(lambda t: "!!!." + t.split(".", 1)[1]),
    "malformed_header_not_json": _genuine_then(lambda t: b64(b"{alg") + "." + t.split(".", 1)[1]),
    "malformed_header_json_array": _genuine_then(lambda t: b64json(["ES384"]) + "." + t.split(".", 1)[1]),
    "malformed_payload_not_json": _genuine_then(lambda t: t.split(".")[0] + "." + b64(b"sub=alice") + "."
                                                + t.split(".")[2]),
    "malformed_signature_garbage": _genuine_then(lambda t: t.rsplit(".", 1)[0] + ".%%%%"),
    "malformed_whitespace": _genuine_then(lambda t: t.replace(".", " . ", 1)),
    "malformed_json_serialization": _genuine_then(lambda t: json.dumps(
        {"protected": t.split(".")[0], "payload": t.split(".")[1], "signature": t.split(".")[2]})),
    "empty_string": _genuine_then(lambda t: ""),
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_forged_id_token_is_rejected(site: Harness, watch: SecretWatch, forgery: str) -> None:
    make = FORGERIES[forgery]
    response = forged_sign_in(site, watch, lambda nonce, body: make(site.fake, nonce, body))
    if forgery == "empty_string":
        # An empty id_token is "no ID token": the provider broke the protocol.
        assert_rejected_callback(site, response, "Configuration")
    else:
        assert_rejected_callback(site, response, "Verification")
    assert site.fake.counts["token:authorization_code"] == 1


def test_id_token_not_a_string_is_rejected(site: Harness, watch: SecretWatch) -> None:
    callback, _ = begin_sign_in(site)
    watch.rewrite = lambda body: {**body, "id_token": {"alg": "none"}}
    assert_rejected_callback(site, site.client.get(callback), "Configuration")


def test_nonce_of_another_sign_in_is_rejected(site: Harness, watch: SecretWatch) -> None:
    # An ID token minted for an earlier authorization request cannot finish a new one.
    _, earlier = begin_sign_in(site)
    response = forged_sign_in(site, watch, lambda nonce, body: site.fake.sign_id_token(
        claims(site.fake, earlier["nonce"])))
    assert_rejected_callback(site, response, "Verification")


@pytest.mark.parametrize(("alg", "make_key"), [
    ("RS256", lambda: RSAKey.generate_key(2048, {"alg": "RS256", "use": "sig"}, auto_kid=True)),
    ("ES256", lambda: ECKey.generate_key("P-256", {"alg": "ES256", "use": "sig"}, auto_kid=True)),
    ("ES512", lambda: ECKey.generate_key("P-521", {"alg": "ES512", "use": "sig"}, auto_kid=True)),
])
def test_algorithm_outside_allow_list_is_rejected_even_with_its_key_served(
        site: Harness, watch: SecretWatch, alg: str, make_key: Callable[[], Key]) -> None:
    key = make_key()
    serve_extra_keys(site.fake, key)
    response = forged_sign_in(site, watch, lambda nonce, body: site.fake.sign_id_token(
        claims(site.fake, nonce), alg=alg, key=key, kid=key.kid))
    assert_rejected_callback(site, response, "Verification")


def test_es384_token_with_the_kid_of_a_served_p256_key_is_rejected(site: Harness, watch: SecretWatch) -> None:
    # Key confusion: the header's kid names a served key of another curve.
    p256 = ECKey.generate_key("P-256", {"use": "sig"}, auto_kid=True)
    serve_extra_keys(site.fake, p256)
    attacker = ECKey.generate_key("P-384")
    response = forged_sign_in(site, watch, lambda nonce, body: site.fake.sign_id_token(
        claims(site.fake, nonce), key=attacker, kid=p256.kid))
    assert_rejected_callback(site, response, "Verification")


def test_unknown_kid_refetches_jwks_once_then_rejects(site: Harness, watch: SecretWatch, clock: Clock) -> None:
    warm_up(site, watch)
    assert site.fake.counts["jwks"] == 1
    clock.advance(31)  # past the refetch interval
    attacker = ECKey.generate_key("P-384", {"alg": "ES384"}, auto_kid=True)
    response = forged_sign_in(site, watch, lambda nonce, body: site.fake.sign_id_token(
        claims(site.fake, nonce), key=attacker, kid="kid-the-provider-never-published"))
    assert_rejected_callback(site, response, "Verification")
    assert site.fake.counts["jwks"] == 2  # exactly one refetch


def test_unknown_kid_on_a_cold_cache_fetches_jwks_once(site: Harness, watch: SecretWatch) -> None:
    attacker = ECKey.generate_key("P-384", {"alg": "ES384"})
    response = forged_sign_in(site, watch, lambda nonce, body: site.fake.sign_id_token(
        claims(site.fake, nonce), key=attacker, kid="unknown"))
    assert_rejected_callback(site, response, "Verification")
    assert site.fake.counts["jwks"] == 1  # the first fetch is fresh: no immediate refetch


def test_two_keys_and_no_kid_is_rejected(site: Harness, watch: SecretWatch) -> None:
    site.fake.rotate_keys()  # the JWKS now holds two ES384 keys
    assert len(site.fake.jwks()["keys"]) == 2
    response = forged_sign_in(site, watch, lambda nonce, body: site.fake.sign_id_token(
        claims(site.fake, nonce), headers={"kid": None}))
    assert_rejected_callback(site, response, "Verification")


# -- the ID token of a refresh ------------------------------------------------------------------

def _refresh_with(site: Harness, watch: SecretWatch, clock: Clock, forge: Callable[[dict[str, Any]], str]) -> None:
    assert_signed_in(site, site.sign_in("alice"))
    before = dict(site.client.cookies.items())

    def rewrite(body: dict[str, Any]) -> dict[str, Any]:
        token = forge(body)
        watch.add(token)
        return {**body, "id_token": token}

    watch.rewrite = rewrite
    clock.advance(site.fake.access_token_ttl - 30)  # inside the refresh leeway
    response = site.client.get("/")
    watch.rewrite = None
    assert response.status_code == 200
    assert response.json()["authenticated"] is False
    assert session_written(response) == []
    assert before  # the session cookie(s) existed and are now deleted:
    assert all(any(h.startswith(f"{name}=;") and "Max-Age=0" in h for h in response.headers.get_list("set-cookie"))
               for name in before if name.startswith("logto.session-token"))
    assert site.me()["authenticated"] is False


def test_refresh_with_forged_id_token_ends_the_session(site: Harness, watch: SecretWatch, clock: Clock) -> None:
    attacker = ECKey.generate_key("P-384", {"alg": "ES384"})
    _refresh_with(site, watch, clock, lambda body: site.fake.sign_id_token(claims(site.fake, None), key=attacker))


def test_refresh_with_id_token_of_another_subject_ends_the_session(site: Harness, watch: SecretWatch,
                                                                   clock: Clock) -> None:
    _refresh_with(site, watch, clock, lambda body: site.fake.sign_id_token(
        site.fake.make_id_token_claims("mallory")))


def test_refresh_with_alg_none_id_token_ends_the_session(site: Harness, watch: SecretWatch, clock: Clock) -> None:
    _refresh_with(site, watch, clock, lambda body: site.fake.sign_id_token(claims(site.fake, None), alg="none"))
