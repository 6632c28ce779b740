"""The provider's keys and endpoints misbehaving: rotation, refetch storms, garbage, hangs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import Clock, Harness
from joserfc.jwk import ECKey, OctKey

from logto_middleware.testing import FakeLogto

from .security_support import (
    Override,
    RoutedFake,
    SecretWatch,
    assert_error_redirect,
    assert_rejected_callback,
    assert_signed_in,
    begin_sign_in,
    forged_sign_in,
    new_client,
    session_written,
)


def routed(make_harness: Callable[..., Harness], fake: FakeLogto, watch: SecretWatch, override: Override) -> Harness:
    """A harness (of the test's session mode) whose provider answers through `override` first."""
    return watch.attach(make_harness(RoutedFake(fake, override)))


def on(endpoint: str, answer: Any) -> Override:
    """Answer requests to the fake's `endpoint` path with `answer(request)` (or raise from it)."""
    def override(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith(endpoint):
            return answer(request)  # type: ignore[no-any-return]
        return None
    return override


def warm_up(site: Harness, watch: SecretWatch, login: str = "bob") -> None:
    other = watch.watch_client(new_client(site))
    callback, _ = begin_sign_in(site, other, login=login)
    assert session_written(other.get(callback))


def unknown_kid_sign_in(site: Harness, watch: SecretWatch, kid: str) -> httpx.Response:
    attacker = ECKey.generate_key("P-384", {"alg": "ES384"})
    return forged_sign_in(site, watch, lambda nonce, body: site.fake.sign_id_token(
        site.fake.make_id_token_claims("alice", nonce=nonce), key=attacker, kid=kid))


# -- rotation (more in test_key_rotation.py, with the refetch storms) ---------------------------

def test_key_rotation_is_picked_up_after_one_refetch(site: Harness, watch: SecretWatch, clock: Clock) -> None:
    warm_up(site, watch)
    old_kid = site.fake.current_kid
    assert site.fake.counts["jwks"] == 1
    clock.advance(31)
    new_kid = site.fake.rotate_keys(drop_old=True)
    assert new_kid != old_kid
    assert_signed_in(site, site.sign_in("alice"))
    assert site.fake.counts["jwks"] == 2
    warm_up(site, watch, login="carol")  # the new key is cached now: no further fetch
    assert site.fake.counts["jwks"] == 2


# -- a JWKS or provider that answers garbage, errors, or nothing --------------------------------

GARBAGE = {
    "html": lambda request: httpx.Response(200, content=b"<html><body>Bad gateway</body></html>",
                                           headers={"content-type": "text/html"}),
    "truncated_json": lambda request: httpx.Response(200, content=b'{"keys": [{"kty": "EC", "crv"'),
    "json_array": lambda request: httpx.Response(200, json=[1, 2, 3]),
    "keys_not_a_list": lambda request: httpx.Response(200, json={"keys": "all of them"}),
    "no_keys": lambda request: httpx.Response(200, json={"keys": []}),
    "invalid_keys": lambda request: httpx.Response(200, json={"keys": [{"kty": "EC", "crv": "P-384", "x": "!"},
                                                                      "not-a-key", 42]}),
    "symmetric_key_only": lambda request: httpx.Response(200, json={"keys": [
        OctKey.generate_key(256, {"alg": "HS256"}, auto_kid=True).as_dict(private=True)]}),
    "encryption_key_only": lambda request: httpx.Response(200, json={"keys": [
        ECKey.generate_key("P-384", {"use": "enc"}, auto_kid=True).as_dict(private=False)]}),
    "oversized": lambda request: httpx.Response(200, content=b'{"keys":[],"pad":"' + b"x" * 600_000 + b'"}'),
    "status_404": lambda request: httpx.Response(404, json={"error": "not_found"}),
}


@pytest.mark.parametrize("garbage", sorted(GARBAGE))
def test_jwks_garbage_ends_on_configuration_error(make_harness: Callable[..., Harness], fake: FakeLogto,
                                                  watch: SecretWatch, garbage: str) -> None:
    site = routed(make_harness, fake, watch, on("/jwks", GARBAGE[garbage]))
    callback, _ = begin_sign_in(site)
    assert_rejected_callback(site, site.client.get(callback), "Configuration")


def test_jwks_symmetric_key_is_never_trusted_for_hmac(make_harness: Callable[..., Harness], fake: FakeLogto,
                                                      watch: SecretWatch) -> None:
    # A JWKS that also (wrongly) publishes an oct key: an HS256 token made with it is refused.
    oct_key = OctKey.generate_key(256, {"alg": "HS256"}, auto_kid=True)
    fake.jwks_override = {"keys": [*fake.jwks()["keys"], oct_key.as_dict(private=True)]}
    site = watch.attach(make_harness())
    response = forged_sign_in(site, watch, lambda nonce, body: fake.sign_id_token(
        fake.make_id_token_claims("alice", nonce=nonce), alg="HS256", key=oct_key, kid=oct_key.kid))
    assert_rejected_callback(site, response, "Verification")


@pytest.mark.parametrize("status", [500, 502, 503])
def test_jwks_5xx_ends_on_provider_unavailable(site: Harness, status: int) -> None:
    callback, _ = begin_sign_in(site)
    site.fake.fail_next("jwks", status=status)
    assert_rejected_callback(site, site.client.get(callback), "ProviderUnavailable")


def _timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("the provider did not answer", request=request)


def _refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.mark.parametrize("error", [_timeout, _refused], ids=["read_timeout", "connect_error"])
def test_jwks_hang_ends_on_provider_unavailable_without_hanging(make_harness: Callable[..., Harness], fake: FakeLogto,
                                                                watch: SecretWatch, error: Any) -> None:
    site = routed(make_harness, fake, watch, on("/jwks", error))
    callback, _ = begin_sign_in(site)
    started = time.monotonic()
    response = site.client.get(callback)
    assert time.monotonic() - started < 5
    assert_rejected_callback(site, response, "ProviderUnavailable")


@pytest.mark.parametrize("error", [_timeout, _refused], ids=["read_timeout", "connect_error"])
def test_token_endpoint_hang_ends_on_provider_unavailable(make_harness: Callable[..., Harness], fake: FakeLogto,
                                                          watch: SecretWatch, error: Any) -> None:
    site = routed(make_harness, fake, watch, on("/token", error))
    callback, _ = begin_sign_in(site)
    assert_rejected_callback(site, site.client.get(callback), "ProviderUnavailable")


@pytest.mark.parametrize("error", [_timeout, _refused], ids=["read_timeout", "connect_error"])
def test_discovery_hang_at_sign_in_ends_on_provider_unavailable(make_harness: Callable[..., Harness], fake: FakeLogto,
                                                                watch: SecretWatch, error: Any) -> None:
    site = routed(make_harness, fake, watch, on("/.well-known/openid-configuration", error))
    response = site.start_sign_in()
    assert_error_redirect(response, "ProviderUnavailable")
    assert response.headers.get_list("set-cookie") == []  # no transaction started
    assert site.client.get(response.headers["location"]).status_code == 503


def test_discovery_outage_at_sign_in_ends_on_provider_unavailable(site: Harness) -> None:
    site.fake.outage.add("discovery")
    response = site.start_sign_in()
    assert_error_redirect(response, "ProviderUnavailable")
    assert site.client.get(response.headers["location"]).status_code == 503


def test_jwks_failure_after_warm_up_keeps_the_cached_keys(site: Harness, watch: SecretWatch, clock: Clock) -> None:
    # Garbage on a refetch must not wipe the good keys: honest sign-ins keep working.
    warm_up(site, watch)
    clock.advance(31)
    site.fake.jwks_override = {"keys": "garbage"}
    assert_rejected_callback(site, unknown_kid_sign_in(site, watch, "unknown"), "Verification")
    assert site.fake.counts["jwks"] == 2
    assert_signed_in(site, site.sign_in("alice"))
