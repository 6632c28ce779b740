"""The real oidc-provider rotates its signing key (POST /__rotate_keys) in the first seconds
after the app fetched the JWKS: sign-in, refresh and the example API's bearer check go on
working at once, through both examples under their real servers, with the old key kept and
with it dropped."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from logto_middleware import CookieStore
from logto_middleware._protocol.tokens import decode_unverified
from logto_middleware.flow import run_without_io

from .harness import AUTH_SECRET, KINDS, Stack, refresh_stats
from .test_example_api_oidc import api_demo
from .test_examples_oidc import SESSION_COOKIE, me, sign_in

RESOURCE = "https://api.items.example"
TOKEN_TTL = 60
# As long as the tokens live: every request refreshes the session's tokens (and the resource
# token of /api-demo), so each step below verifies a fresh ID token or access token.
REFRESH_LEEWAY = TOKEN_TTL
OLD_COOLDOWN = 30  # the refetch cooldown that failed sign-ins after a rotation


@pytest.fixture(scope="module", params=KINDS)
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    running = Stack(str(request.param), access_token_ttl=TOKEN_TTL,
                    env={"AUTH_LOGTO_RESOURCES": RESOURCE, "AUTH_REFRESH_LEEWAY": str(REFRESH_LEEWAY)},
                    provider_options={"resource_indicator": RESOURCE, "resource_scopes": ("read:items",)})
    try:
        yield running
    finally:
        running.stop()


def session_id_token_kid(browser: httpx.Client) -> str:
    """The kid of the ID token in the browser's session cookie (opened with the app's secret)."""
    data = run_without_io(CookieStore([AUTH_SECRET]).load(browser.cookies[SESSION_COOKIE]))
    assert data is not None and data.id_token
    return str(decode_unverified(data.id_token)[0]["kid"])


def test_sign_in_refresh_and_bearer_right_after_rotations(stack: Stack) -> None:
    op = stack.op
    with httpx.Client(timeout=15.0, follow_redirects=False) as browser:
        sign_in(stack, browser, "alice", "/")  # the app's first JWKS fetch
        started = time.monotonic()
        assert api_demo(stack, browser)[0]["caller"]["sub"] == "alice"  # the example API's first one
        for drop_old in (False, True):
            kid = op.rotate_keys(drop_old=drop_old)
            published = [key["kid"] for key in httpx.get(op.jwks_uri, timeout=5.0).json()["keys"]]
            assert published[0] == kid and (len(published) == 1) == drop_old

            # A refresh whose new ID token carries the new kid.
            errors = refresh_stats(op)["errors"]
            body = me(stack, browser)
            assert body["user"]["id"] == "alice" and body["error"] is None, f"{body}\n{stack.server.log}"
            assert session_id_token_kid(browser) == kid
            assert refresh_stats(op)["errors"] == errors

            # An access token signed with the new key, checked by the example API (bearer).
            answer, claims = api_demo(stack, browser)
            assert answer["caller"]["sub"] == "alice" and claims["aud"] == RESOURCE

            # A new sign-in, whose ID token carries the new kid.
            with httpx.Client(timeout=15.0, follow_redirects=False) as other:
                sign_in(stack, other, "bob", "/")
                assert session_id_token_kid(other) == kid
                assert me(stack, other)["user"]["id"] == "bob"
        # All of it inside the cooldown that used to refuse the refetch.
        assert time.monotonic() - started < OLD_COOLDOWN
    assert "no provider key matches" not in stack.server.log
