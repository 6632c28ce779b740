"""A user's devices end to end: both example apps under their real servers (uvicorn: ASGI,
waitress: WSGI), sessions in a real redis-server, signing in with the real oidc-provider. Two
browsers sign in as one user; the list shows both, the current one marked; ending the other signs
it out at once, and its refresh token is revoked at the provider (Logto's end_session would leave
an offline_access grant alive)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from logto_middleware.flow import SyncDriver
from logto_middleware.stores import RedisStore, ServerSessions

from .harness import AUTH_SECRET, KINDS, Stack
from .test_examples_oidc import SESSION_COOKIE, refresh_grant, sign_in

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.5 Mobile/15E148 Safari/604.1")


@pytest.fixture(scope="module")
def redis_store_url(redis_server: Any) -> str:
    if redis_server.process is None:  # stopped by a test of an outage
        redis_server.start()
    return str(redis_server.url)


@pytest.fixture(scope="module", params=KINDS)
def stack(request: pytest.FixtureRequest, redis_store_url: str) -> Iterator[Stack]:
    running = Stack(str(request.param), env={"AUTH_SESSION_STORE": redis_store_url})
    try:
        yield running
    finally:
        running.stop()


def new_browser(user_agent: str) -> httpx.Client:
    return httpx.Client(timeout=15.0, follow_redirects=False, headers={"user-agent": user_agent})


def stored_refresh_token(redis_url: str, browser: httpx.Client) -> str:
    """The refresh token the app keeps for `browser`'s session (what only the server can read)."""
    store = RedisStore.from_url(redis_url)
    try:
        sessions = ServerSessions(store, [AUTH_SECRET])
        data = SyncDriver(httpx.Client()).run(sessions.load(browser.cookies[SESSION_COOKIE]))
    finally:
        store.close()
    assert data is not None and data.refresh_token
    return data.refresh_token


def test_list_and_end_the_other_device(stack: Stack, redis_store_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_store_url).flushall()  # the other server kind's sessions (same user) gone
    with new_browser(FIREFOX) as laptop, new_browser(SAFARI) as phone:
        sign_in(stack, laptop, "alice", "/profile")
        sign_in(stack, phone, "alice", "/profile")
        phone_token = stored_refresh_token(redis_store_url, phone)

        listed = laptop.get(stack.url("/api/auth/sessions"))
        assert listed.status_code == 200, f"{listed.text}\n{stack.server.log}"
        body = listed.json()
        assert body["serverSide"] is True
        assert [(s["description"], s["current"]) for s in body["sessions"]] == [
            ("Firefox on Linux", True), ("Safari on iPhone", False)]
        page = laptop.get(stack.url("/devices"))
        assert page.status_code == 200 and 'data-auth-base="/api/auth"' in page.text

        csrf = laptop.get(stack.url("/api/auth/csrf")).json()["csrfToken"]
        other = body["sessions"][1]["id"]
        ended = laptop.post(stack.url("/api/auth/sessions/end"), json={"session": other},
                            headers={"x-csrf-token": csrf})
        assert ended.status_code == 200, f"{ended.text}\n{stack.server.log}"
        assert ended.json() == {"ended": 1, "revoked": 1}

        assert phone.get(stack.url("/api/me")).status_code == 401  # signed out at once
        assert laptop.get(stack.url("/api/me")).status_code == 200
        refused = refresh_grant(stack, phone_token)
        assert refused.status_code == 400 and refused.json().get("error") == "invalid_grant", refused.status_code
        assert [s["current"] for s in laptop.get(stack.url("/api/auth/sessions")).json()["sessions"]] == [True]
        # Cross-site, even with the cookie: refused.
        assert laptop.post(stack.url("/api/auth/sessions/end"), json={"others": True},
                           headers={"origin": "https://evil.example"}).status_code == 403
