"""Django's own test client against the real oidc-provider configured like Logto: sign in through
the provider's pages, the linked `User` on the request, a refresh after the access token expires
(the provider rotates the refresh token), and sign-out through its end-session endpoint. The
middleware's calls to the provider are real HTTP; only the browser is Django's `Client`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.test import Client
from django.test.utils import override_settings
from e2e.harness import AUTH_SECRET, CLIENT_ID, CLIENT_SECRET, refresh_stats, start_provider
from interop.provider import OidcProviderProcess

ORIGIN = "http://testserver"  # Django's test client's host
ACCESS_TOKEN_TTL = 3  # short, so the test sees a refresh after expiry


@pytest.fixture(scope="module")
def op() -> Iterator[OidcProviderProcess]:
    provider = start_provider(ORIGIN, access_token_ttl=ACCESS_TOKEN_TTL)
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def real_logto(op: OidcProviderProcess, db: None) -> Iterator[None]:
    settings = {"issuer": op.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "secret": AUTH_SECRET,
                "refresh_leeway": 1}
    with override_settings(LOGTO=settings):
        yield


def _login(op: OidcProviderProcess, client: Client, path: str, username: str) -> Any:
    """Follow Django's redirect to sign-in, sign in at the provider, come back to the callback."""
    start = client.get("/api/auth/signin", {"next": path})
    assert start.status_code == 302, start.content
    with httpx.Client(timeout=15.0) as browser:  # the provider's pages and cookies
        back = op.login(browser, start["Location"], username)
    assert back.startswith(f"{ORIGIN}/api/auth/callback/logto?"), back
    return client.get(back.removeprefix(ORIGIN))


def test_test_client_signs_in_refreshes_and_signs_out(op: OidcProviderProcess, real_logto: None) -> None:
    client = Client()
    assert client.get("/protected")["Location"].startswith("/api/auth/signin?next=")
    landed = _login(op, client, "/protected", "alice")
    assert landed.status_code == 302 and landed["Location"] == f"{ORIGIN}/protected", landed.content
    me = client.get("/protected").json()
    assert me["authenticated"] and me["type"] == "User" and me["logto_id"] == "alice", me

    first = client.get("/token").json()["token"]
    before = refresh_stats(op)["success"]
    time.sleep(ACCESS_TOKEN_TTL + 0.5)  # the access token expires; the next request refreshes it
    second = client.get("/token").json()["token"]
    assert second != first
    assert refresh_stats(op)["success"] == before + 1, refresh_stats(op)
    assert client.get("/protected").json()["logto_id"] == "alice"

    out = client.post("/api/auth/signout", HTTP_ORIGIN=ORIGIN)
    assert out.status_code == 302
    end_session = out["Location"]
    assert end_session.startswith(op.issuer) or urlsplit(end_session).netloc == urlsplit(op.issuer).netloc
    assert parse_qs(urlsplit(end_session).query)["post_logout_redirect_uri"] == [f"{ORIGIN}/"]
    with httpx.Client(timeout=15.0) as browser:
        assert op.logout(browser, end_session).startswith(f"{ORIGIN}/")
    assert client.get("/").json()["authenticated"] is False
