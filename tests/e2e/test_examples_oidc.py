"""Both example apps, each under its real server, against the real oidc-provider: sign-in,
automatic refresh (also under 20 concurrent requests) and sign-out, through HTTP only."""

from __future__ import annotations

import base64
import html
import re
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import httpx
import pytest

from logto_middleware import CookieStore
from logto_middleware.flow import run_without_io

from .harness import AUTH_SECRET, CLIENT_ID, CLIENT_SECRET, REFRESH_LEEWAY, SERVERS, Stack, refresh_stats, timestamp

SESSION_COOKIE = "logto.session-token"


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    """A cookie jar shared by the app and the provider, like a browser's."""
    with httpx.Client(timeout=15.0, follow_redirects=False) as client:
        yield client


def sign_in(stack: Stack, browser: httpx.Client, username: str, callback: str) -> httpx.Response:
    start = browser.get(stack.url("/api/auth/signin"), params={"callbackUrl": callback})
    assert start.status_code == 302, start.text
    location = start.headers["location"]
    assert location.startswith(stack.op.authorization_endpoint + "?"), location
    back = stack.op.login(browser, location, username)
    assert back.startswith(stack.url("/api/auth/callback/logto?")), back
    landed = browser.get(back)
    assert landed.status_code == 302, f"{landed.status_code} {landed.text}\n{stack.server.log}"
    assert landed.headers["location"] == stack.url(callback)
    return landed


def me(stack: Stack, browser: httpx.Client) -> dict[str, Any]:
    response = browser.get(stack.url("/api/me"))
    assert response.status_code == 200, f"{response.status_code} {response.text}\n{stack.server.log}"
    body: dict[str, Any] = response.json()
    return body


def refresh_due_at(body: dict[str, Any]) -> float:
    """When the app will refresh: `refresh_leeway` seconds before the access token expires."""
    return timestamp(body["access_token_expires"]) - REFRESH_LEEWAY


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def session_refresh_token(browser: httpx.Client) -> str:
    """Open the session cookie with the app's secret (what only the server can do)."""
    data = run_without_io(CookieStore([AUTH_SECRET]).load(browser.cookies[SESSION_COOKIE]))
    assert data is not None and data.refresh_token
    return data.refresh_token


def refresh_grant(stack: Stack, refresh_token: str) -> httpx.Response:
    credentials = f"{quote_plus(CLIENT_ID)}:{quote_plus(CLIENT_SECRET)}".encode()
    return httpx.post(stack.op.token_endpoint, timeout=10.0,
                      data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                      headers={"Authorization": "Basic " + base64.b64encode(credentials).decode()})


def test_anonymous_pages(stack: Stack, browser: httpx.Client) -> None:
    home = browser.get(stack.url("/"))
    assert home.status_code == 200
    assert home.headers["content-type"].startswith("text/html")
    assert home.headers["cache-control"] == "no-store"
    for text in (">Sign in<", "Continue with WeChat", "Continue with Hugging Face", 'id="session-status"',
                 'data-auth-base="/api/auth"'):  # where the page's script asks for the session
        assert text in home.text
    assert "Sign out" not in home.text

    profile = browser.get(stack.url("/profile"))
    assert profile.status_code == 302
    location = urlsplit(profile.headers["location"])
    assert location.path == "/api/auth/signin" and not location.netloc
    assert parse_qs(location.query) == {"callbackUrl": ["/profile"]}

    api = browser.get(stack.url("/api/me"))
    assert api.status_code == 401
    assert api.headers["content-type"].startswith("application/json")
    assert api.json() == {"error": "unauthorized"}

    assert browser.get(stack.url("/api/auth/session")).json() is None


@pytest.mark.parametrize("connector", ["social:wechat", "social:huggingface"])
def test_social_buttons_start_direct_sign_in(stack: Stack, browser: httpx.Client, connector: str) -> None:
    home = browser.get(stack.url("/")).text
    links = [html.unescape(href) for href in re.findall(r'href="(/api/auth/signin\?[^"]*)"', home)]
    href = next(link for link in links if f"direct_sign_in={quote(connector, safe='')}" in link)
    assert parse_qs(urlsplit(href).query) == {"callbackUrl": ["/"], "direct_sign_in": [connector]}
    start = browser.get(stack.url(href))
    assert start.status_code == 302
    query = parse_qs(urlsplit(start.headers["location"]).query)
    assert query["direct_sign_in"] == [connector]
    assert query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == [stack.url("/api/auth/callback/logto")]


def test_sign_in_refresh_and_sign_out(stack: Stack, browser: httpx.Client) -> None:
    op = stack.op
    op.reset_stats()

    # -- sign in, coming back to the protected page --------------------------------------------
    sign_in(stack, browser, "alice", "/profile")
    profile = browser.get(stack.url("/profile"))
    assert profile.status_code == 200, profile.text
    # The sign-out form is logto_middleware.signout_form(); the page's script adds the CSRF token
    # to it (tests/browser checks that it is filled in).
    for text in ("Alice", "alice@example.com", "https://avatars.example.com/alice.png", ">Sign out<",
                 '<form method="post" action="/api/auth/signout" class="signout">'):
        assert text in profile.text
    first = me(stack, browser)
    assert first["user"] == {"id": "alice", "name": "Alice", "email": "alice@example.com",
                             "image": "https://avatars.example.com/alice.png"}
    assert first["has_access_token"] is True
    assert "offline_access" in first["scopes"]
    assert "access_token" not in first and CLIENT_SECRET not in str(first)
    session = browser.get(stack.url("/api/auth/session")).json()
    assert session["user"] == first["user"]
    assert session["expires"] == first["expires"]
    assert op.stats()["grants"]["authorization_code"] == 1

    # -- the access token is fresh for a few seconds: no refresh yet ---------------------------
    due = refresh_due_at(first)
    assert time.time() < due - 0.2, "signing in took longer than the access token stays fresh"
    assert refresh_stats(op) == {"success": 0, "errors": 0, "outcomes": []}

    # -- past the refresh point the next request refreshes, once -------------------------------
    sleep_until(due + 0.3)
    second = me(stack, browser)
    assert second["has_access_token"] is True and second["error"] is None
    assert timestamp(second["access_token_expires"]) > timestamp(first["access_token_expires"])
    assert refresh_stats(op) == {"success": 1, "errors": 0, "outcomes": ["success"]}
    assert browser.get(stack.url("/profile")).status_code == 200
    assert refresh_stats(op)["success"] == 1

    # -- 20 concurrent requests across the next refresh point: all succeed, one grant ----------
    # 6 go out just before it, 14 at once just after it, all with the same (old) cookie.
    due = refresh_due_at(second)
    results: list[tuple[int, Any]] = []
    lock = threading.Lock()
    before, after = threading.Barrier(6), threading.Barrier(14)

    def call(start_at: float, barrier: threading.Barrier) -> None:
        sleep_until(start_at)
        barrier.wait(timeout=10)
        response = browser.get(stack.url("/api/me"))
        with lock:
            results.append((response.status_code, response.json()))

    threads = [threading.Thread(target=call, args=(due - 0.25, before)) for _ in range(6)]
    threads += [threading.Thread(target=call, args=(due + 0.05, after)) for _ in range(14)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 20
    assert [status for status, _ in results] == [200] * 20, f"{results}\n{stack.server.log}"
    assert all(body["user"]["id"] == "alice" and body["has_access_token"] for _, body in results)
    # A second success means the rotated refresh token was the one used: reusing the first
    # would have been refused (invalid_grant) and revoked the grant.
    assert refresh_stats(op) == {"success": 2, "errors": 0, "outcomes": ["success", "success"]}
    third = me(stack, browser)
    assert timestamp(third["access_token_expires"]) > timestamp(second["access_token_expires"])
    assert refresh_stats(op)["success"] == 2

    # -- sign out -------------------------------------------------------------------------------
    refresh_token = session_refresh_token(browser)
    forged = browser.post(stack.url("/api/auth/signout"), headers={"Origin": "http://evil.example"})
    assert forged.status_code == 403
    assert me(stack, browser)["user"]["id"] == "alice"

    csrf = browser.get(stack.url("/api/auth/csrf")).json()["csrfToken"]
    signout = browser.post(stack.url("/api/auth/signout"), data={"csrfToken": csrf})
    assert signout.status_code == 302, signout.text
    end_session = signout.headers["location"]
    assert end_session.startswith(op.end_session_endpoint + "?")
    query = parse_qs(urlsplit(end_session).query)
    assert query["client_id"] == [CLIENT_ID]
    assert query["post_logout_redirect_uri"] == [stack.url("/")]
    assert query["id_token_hint"][0].count(".") == 2
    assert SESSION_COOKIE not in browser.cookies

    landed = op.logout(browser, end_session)
    assert landed.startswith(stack.url("/")), landed
    home = browser.get(landed)
    assert home.status_code == 200 and ">Sign in<" in home.text and "Alice" not in home.text
    assert browser.get(stack.url("/api/auth/session")).json() is None
    gone = browser.get(stack.url("/api/me"))
    assert gone.status_code == 401 and gone.json() == {"error": "unauthorized"}

    stats = op.stats()
    assert stats["revocations"] == 1 and stats["revocation_errors"] == 0
    assert stats["end_session"] == 1 and stats["end_session_confirm"] == 1
    assert stats["end_session_success"] == 1
    # The app revoked the refresh token itself (oidc-provider keeps offline grants on end-session).
    reused = refresh_grant(stack, refresh_token)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"


def test_server_stops_cleanly(stack: Stack) -> None:
    """Last test of each app: SIGTERM ends it with status 0, like Ctrl-C."""
    assert stack.server.process.poll() is None
    assert stack.server.stop() == 0, stack.server.log
    assert SERVERS[stack.kind] in stack.server.log.lower()
