"""Logto rotates its signing key: sign-ins, refreshes and bearer tokens signed with the new key
work at once (no failed sign-in while a cooldown runs), a key that left the JWKS stops
verifying, and tokens anyone can send refetch the JWKS at a limited rate only."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import Clock, Harness
from joserfc import jws
from joserfc.jwk import ECKey
from joserfc.registry import HeaderParameter

from logto_middleware import BearerValidator
from logto_middleware._protocol.provider import ProviderCache
from logto_middleware._protocol.tokens import BACKCHANNEL_LOGOUT_EVENT, verify_id_token
from logto_middleware.flow import AsyncDriver
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

API = "https://api.example.com"


def refresh_soon(make_harness: Callable[..., Harness], watch: SecretWatch) -> Harness:
    """A harness whose sessions are due for a refresh 2 s after sign-in (the fake's access
    tokens live an hour): a refresh happens well inside the old 30 s cooldown."""
    site = make_harness(refresh_leeway=FakeLogto().access_token_ttl - 2)
    return watch.attach(site)


@pytest.mark.parametrize("drop_old", [False, True], ids=["old_kept", "old_dropped"])
def test_sign_in_right_after_a_rotation(site: Harness, drop_old: bool) -> None:
    assert_signed_in(site, site.sign_in("bob"), "bob")
    assert site.fake.counts["jwks"] == 1
    site.fake.rotate_keys(drop_old=drop_old)
    assert_signed_in(site, site.sign_in("alice"))  # same second: no cooldown stands in the way
    assert site.fake.counts["jwks"] == 2
    assert_signed_in(site, site.sign_in("carol"), "carol")
    assert site.fake.counts["jwks"] == 2  # the new key is cached now


@pytest.mark.parametrize("drop_old", [False, True], ids=["old_kept", "old_dropped"])
def test_refresh_whose_id_token_has_the_new_kid(make_harness: Callable[..., Harness], watch: SecretWatch,
                                                clock: Clock, drop_old: bool) -> None:
    site = refresh_soon(make_harness, watch)
    assert_signed_in(site, site.sign_in("alice"))
    first = site.me()["access_token"]
    site.fake.rotate_keys(drop_old=drop_old)
    clock.advance(5)
    after = site.me()
    assert after["authenticated"] is True and after["error"] is None
    assert after["access_token"] != first
    assert site.fake.counts["token:refresh_token"] == 1
    assert site.fake.counts["jwks"] == 2


def test_unknown_kids_from_the_token_endpoint_refetch_at_once(site: Harness, watch: SecretWatch) -> None:
    # The callback's ID token comes from the token endpoint itself: every unknown kid may look
    # at the JWKS again, there is no cooldown (an attacker cannot put a token there).
    other = watch.watch_client(new_client(site))
    callback, _ = begin_sign_in(site, other, login="bob")
    assert session_written(other.get(callback))
    attacker = ECKey.generate_key("P-384", {"alg": "ES384"})
    for i in range(3):
        response = forged_sign_in(site, watch, lambda nonce, body, i=i: site.fake.sign_id_token(
            site.fake.make_id_token_claims("alice", nonce=nonce), key=attacker, kid=f"unknown-{i}"))
        assert_rejected_callback(site, response, "Verification")
    assert site.fake.counts["jwks"] == 1 + 3


def test_concurrent_id_tokens_with_the_new_kid_share_one_refetch(fake: FakeLogto, clock: Clock) -> None:
    provider = ProviderCache(fake.issuer, clock=clock)

    class Slow(httpx.AsyncBaseTransport):
        """The fake, with a JWKS that takes a moment: the verifications overlap."""

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/jwks"):
                await asyncio.sleep(0.05)
            return await fake.transport().handle_async_request(request)

    driver = AsyncDriver(httpx.AsyncClient(transport=Slow()))

    def id_token() -> str:
        return fake.sign_id_token(fake.make_id_token_claims("alice", nonce="n"))

    def verify(token: str) -> Any:
        return driver.run(verify_id_token(token, provider=provider, issuer=fake.issuer, client_id=fake.client_id,
                                          algorithms=("ES384",), now=clock(), leeway=60, trusted_source=True))

    async def scenario() -> list[Any]:
        await verify(id_token())
        fake.rotate_keys(drop_old=True)
        token = id_token()
        return list(await asyncio.gather(*(verify(token) for _ in range(10))))

    results = asyncio.run(scenario())
    assert [claims["sub"] for claims in results] == [fake.user_claims("alice")["sub"]] * 10
    assert fake.counts["jwks"] == 2


# -- bearer access tokens ------------------------------------------------------------------------

def access_token(fake: FakeLogto, clock: Clock, **header: Any) -> str:
    now = int(clock())
    claims = {"iss": fake.issuer, "sub": "user-1", "aud": API, "exp": now + 3600, "iat": now,
              "jti": uuid.uuid4().hex, "client_id": fake.client_id, "scope": "read:items"}
    return fake.sign_access_token(claims, **header)


@pytest.fixture
def validator(fake: FakeLogto, clock: Clock) -> BearerValidator:
    return BearerValidator(fake.issuer, API, http_client=fake.httpx_client(),
                           async_http_client=fake.async_httpx_client(), clock=clock)


def bearer_status(validator: BearerValidator, kind: str, token: str) -> int:
    header = f"Bearer {token}"
    try:
        if kind == "wsgi":
            validator.verify_sync(header)
        else:
            asyncio.run(validator.verify_async(header))
    except Exception as exc:
        return int(getattr(exc, "status", 0))
    return 200


@pytest.mark.parametrize("drop_old", [False, True], ids=["old_kept", "old_dropped"])
def test_bearer_token_with_the_new_key_right_after_a_rotation(validator: BearerValidator, fake: FakeLogto,
                                                              clock: Clock, kind: str, drop_old: bool) -> None:
    old = access_token(fake, clock)
    assert bearer_status(validator, kind, old) == 200
    fake.rotate_keys(drop_old=drop_old)
    assert bearer_status(validator, kind, access_token(fake, clock)) == 200
    assert fake.counts["jwks"] == 2
    # A key that left the JWKS stops verifying once the JWKS was refetched, even for a token
    # verified (and cached) before.
    assert bearer_status(validator, kind, old) == (200 if not drop_old else 401)


def test_bearer_tokens_after_two_quick_rotations(validator: BearerValidator, fake: FakeLogto, clock: Clock,
                                                kind: str) -> None:
    # A refetch that found a rotation does not hold the next one back: only a real rotation
    # makes new kids appear, which no attacker can.
    assert bearer_status(validator, kind, access_token(fake, clock)) == 200
    for drop_old in (False, True):
        fake.rotate_keys(drop_old=drop_old)
        clock.advance(1)
        assert bearer_status(validator, kind, access_token(fake, clock)) == 200
    assert fake.counts["jwks"] == 3


def test_bearer_tokens_with_unknown_kids_refetch_once_per_cooldown(validator: BearerValidator, fake: FakeLogto,
                                                                   clock: Clock, kind: str) -> None:
    assert bearer_status(validator, kind, access_token(fake, clock)) == 200
    attacker = ECKey.generate_key("P-384", {"alg": "ES384"})
    for _ in range(3):
        for _ in range(10):
            forged = access_token(fake, clock, key=attacker, kid=secrets.token_hex(8))
            assert bearer_status(validator, kind, forged) == 401
            clock.advance(2)  # twenty seconds per round: within the 30 s cooldown
        clock.advance(11)
    assert fake.counts["jwks"] == 1 + 3  # one refetch per round, the first one included


# -- back-channel logout tokens ------------------------------------------------------------------

@pytest.mark.modes("memory", "redis", reason="back-channel logout needs a server-side store")
def test_logout_tokens_with_unknown_kids_refetch_once_per_cooldown(make_harness: Callable[..., Harness],
                                                                   watch: SecretWatch, clock: Clock) -> None:
    site = watch.attach(make_harness())
    assert_signed_in(site, site.sign_in("alice"))
    attacker = ECKey.generate_key("P-384", {"alg": "ES384"})

    def logout(kid: str) -> int:
        now = int(clock())
        claims = {"iss": site.fake.issuer, "aud": site.fake.client_id, "iat": now, "exp": now + 120,
                  "jti": uuid.uuid4().hex, "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
                  "sub": site.fake.user_claims("alice")["sub"]}
        token = site.fake.sign_id_token(claims, key=attacker, kid=kid)
        watch.add(token)
        return site.client.post("/api/auth/backchannel-logout", data={"logout_token": token},
                                headers={"cookie": ""}).status_code

    for i in range(12):
        assert logout(f"storm-{i}") == 400
        clock.advance(1)
    assert site.fake.counts["jwks"] == 2  # one refetch for twelve unknown kids in twelve seconds
    clock.advance(30)
    assert logout("storm-late") == 400
    assert site.fake.counts["jwks"] == 3  # the next interval allows one more
    assert site.me()["authenticated"] is True


# -- joserfc decides what a valid JWS is ---------------------------------------------------------

@pytest.mark.parametrize("crit", [False, True], ids=["plain", "unknown_crit"])
def test_id_token_with_an_unknown_crit_header_is_refused(site: Harness, watch: SecretWatch, crit: bool) -> None:
    # RFC 7515 4.1.11: a header parameter listed in `crit` that the recipient does not
    # understand makes the JWS invalid, even with a good signature from a published key.
    key = ECKey.generate_key("P-384", {"alg": "ES384", "use": "sig"}, auto_kid=True)
    site.fake.jwks_override = {"keys": [*site.fake.jwks()["keys"], key.as_dict(private=False)]}
    header: dict[str, Any] = {"alg": "ES384", "typ": "JWT", "kid": key.kid}
    if crit:
        header.update({"crit": ["x-unknown"], "x-unknown": 1})
    minter = jws.JWSRegistry(header_registry={"x-unknown": HeaderParameter("test", "int")}, algorithms=["ES384"])

    def forge(nonce: str, body: dict[str, Any]) -> str:
        claims = site.fake.make_id_token_claims("alice", nonce=nonce)
        return jws.serialize_compact(header, json.dumps(claims), key, algorithms=["ES384"], registry=minter)

    response = forged_sign_in(site, watch, forge)
    if crit:
        assert_rejected_callback(site, response, "Verification")
    else:
        assert_signed_in(site, response)
