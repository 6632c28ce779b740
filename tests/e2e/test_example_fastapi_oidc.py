"""The FastAPI example under uvicorn against the real oidc-provider with one API resource: sign in
through `login_required`, the user on the request (`CurrentUser`), the access token dependency
calling the example API, refresh after expiry, sign out; and Swagger's security scheme."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from .harness import CLIENT_ID, Stack, refresh_stats, timestamp

RESOURCE = "https://api.items.example"
TOKEN_TTL = 5  # seconds: the session's access token and the resource's
REFRESH_LEEWAY = 2


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    running = Stack("fastapi", access_token_ttl=TOKEN_TTL,
                    env={"AUTH_LOGTO_RESOURCES": RESOURCE, "AUTH_REFRESH_LEEWAY": str(REFRESH_LEEWAY),
                         "EXAMPLE_API_LEEWAY": "0"},
                    provider_options={"resource_indicator": RESOURCE,
                                      "resource_scopes": ("read:items", "write:items")})
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15.0, follow_redirects=False) as client:
        yield client


def test_anonymous(stack: Stack, browser: httpx.Client) -> None:
    page = browser.get(stack.url("/profile?tab=1"), headers={"Accept": "text/html"})
    assert page.status_code == 303
    location = urlsplit(page.headers["location"])
    assert location.path == "/api/auth/signin" and parse_qs(location.query) == {"callbackUrl": ["/profile?tab=1"]}
    for path in ("/api/me", "/api/items"):
        api = browser.get(stack.url(path), headers={"Accept": "application/json"})
        assert api.status_code == 401 and api.json() == {"detail": "unauthorized"}, path
    assert ">Sign in<" in browser.get(stack.url("/")).text


def test_openapi_names_the_session_cookie(stack: Stack, browser: httpx.Client) -> None:
    document = browser.get(stack.url("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["LogtoSession"]["name"] == "logto.session-token"
    assert document["paths"]["/api/me"]["get"]["security"] == [{"LogtoSession": []}]
    assert browser.get(stack.url("/docs")).status_code == 200


def test_sign_in_token_refresh_and_sign_out(stack: Stack, browser: httpx.Client) -> None:
    op = stack.op
    op.reset_stats()
    # -- sign in from a protected page, back to it ----------------------------------------------
    page = browser.get(stack.url("/profile"), headers={"Accept": "text/html"})
    start = browser.get(stack.url(page.headers["location"]))
    assert start.status_code == 302, start.text
    back = op.login(browser, start.headers["location"], "alice")
    landed = browser.get(back)
    assert landed.status_code == 302, f"{landed.text}\n{stack.server.log}"
    assert landed.headers["location"] == stack.url("/profile")
    profile = browser.get(stack.url("/profile"), headers={"Accept": "text/html"})
    assert profile.status_code == 200 and "alice@example.com" in profile.text

    # -- the user on the request, and the resource's token calling the example API --------------
    first = browser.get(stack.url("/api/me")).json()
    assert first["user"]["id"] == "alice" and first["has_access_token"] is True
    items = browser.get(stack.url("/api/items"))
    assert items.status_code == 200, f"{items.text}\n{stack.server.log}"
    caller = items.json()["caller"]
    assert caller["sub"] == "alice" and "read:items" in caller["scopes"]

    # -- after expiry the next request refreshes ------------------------------------------------
    time.sleep(max(0.0, timestamp(first["access_token_expires"]) - REFRESH_LEEWAY - time.time()) + 0.5)
    second = browser.get(stack.url("/api/me")).json()
    assert timestamp(second["access_token_expires"]) > timestamp(first["access_token_expires"])
    assert refresh_stats(op)["success"] >= 1 and refresh_stats(op)["errors"] == 0
    time.sleep(TOKEN_TTL)  # the resource token expires too: the dependency gets a new one
    assert browser.get(stack.url("/api/items")).status_code == 200

    # -- sign out -------------------------------------------------------------------------------
    csrf = browser.get(stack.url("/api/auth/csrf")).json()["csrfToken"]
    signout = browser.post(stack.url("/api/auth/signout"), data={"csrfToken": csrf})
    assert signout.status_code == 302
    query = parse_qs(urlsplit(signout.headers["location"]).query)
    assert query["client_id"] == [CLIENT_ID]
    assert browser.get(stack.url("/api/me")).status_code == 401
