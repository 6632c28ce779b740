"""Fresh authentication against the real oidc-provider (configured like Logto), through both
examples under their real servers: `max_age` reaches the authorization request, the provider
honours it (0 asks for credentials again even with a provider session) and answers `auth_time`,
which the session keeps (a refresh included) and the callback checks: a browser that strips
`max_age` from the authorization request gets no session."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pytest
from interop.provider import parse_forms

from logto_middleware import CookieStore
from logto_middleware._protocol.tokens import decode_unverified
from logto_middleware.flow import run_without_io

from .harness import AUTH_SECRET, REFRESH_LEEWAY, Stack, refresh_stats, timestamp

SESSION_COOKIE = "logto.session-token"


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    """A cookie jar shared by the app and the provider, like a browser's."""
    with httpx.Client(timeout=15.0, follow_redirects=False) as client:
        yield client


def start(stack: Stack, browser: httpx.Client, **params: str) -> str:
    """The authorization request the app's sign-in route sends the browser to."""
    response = browser.get(stack.url("/api/auth/signin"), params={"callbackUrl": "/", **params})
    assert response.status_code == 302, f"{response.status_code} {response.text}\n{stack.server.log}"
    location: str = response.headers["location"]
    assert location.startswith(stack.op.authorization_endpoint + "?"), location
    return location


def finish(stack: Stack, browser: httpx.Client, authorization: str) -> httpx.Response:
    """Sign in at the provider (as alice) and come back to the app's callback."""
    back = stack.op.login(browser, authorization, "alice")
    assert back.startswith(stack.url("/api/auth/callback/logto?")), back
    return browser.get(back)


def me(stack: Stack, browser: httpx.Client) -> dict[str, Any]:
    response = browser.get(stack.url("/api/me"))
    assert response.status_code == 200, f"{response.status_code} {response.text}\n{stack.server.log}"
    body: dict[str, Any] = response.json()
    return body


def asks_for_credentials(stack: Stack, browser: httpx.Client, authorization: str) -> bool:
    """Whether the provider answers this authorization request with its login form (rather than
    a consent page or a redirect back)."""
    url = authorization
    for _ in range(10):
        response = browser.get(url)
        if not response.is_redirect:
            return any("login" in form.fields for form in parse_forms(response.text))
        url = urljoin(str(response.url), response.headers["location"])
        if url.startswith(stack.url("/")):
            return False  # straight back to the app
    raise AssertionError("the provider kept redirecting")


def stored_id_token_claims(browser: httpx.Client) -> dict[str, Any]:
    """The claims of the ID token in the session cookie (opened with the app's secret)."""
    data = run_without_io(CookieStore([AUTH_SECRET]).load(browser.cookies[SESSION_COOKIE]))
    assert data is not None and data.id_token
    return decode_unverified(data.id_token)[1]


def test_max_age_reaches_the_provider_and_auth_time_comes_back_and_is_checked(stack: Stack,
                                                                               browser: httpx.Client) -> None:
    # An ordinary sign-in: oidc-provider releases auth_time only when asked (max_age, prompt=login).
    assert finish(stack, browser, start(stack, browser)).headers["location"] == stack.url("/")
    assert me(stack, browser)["auth_time"] is None

    # max_age=300: the provider's session is seconds old, so no credentials; auth_time is its time.
    authorization = start(stack, browser, max_age="300")
    assert parse_qs(urlsplit(authorization).query)["max_age"] == ["300"]
    assert not asks_for_credentials(stack, browser, authorization)
    assert finish(stack, browser, authorization).headers["location"] == stack.url("/")
    first = me(stack, browser)["auth_time"]
    assert isinstance(first, int) and time.time() - 60 < first <= time.time() + 1

    # max_age=0: credentials again, however young the provider's session.
    time.sleep(1.1)  # auth_time has whole seconds
    authorization = start(stack, browser, max_age="0")
    assert parse_qs(urlsplit(authorization).query)["max_age"] == ["0"]
    assert asks_for_credentials(stack, browser, authorization)
    assert finish(stack, browser, authorization).headers["location"] == stack.url("/")
    again = me(stack, browser)
    assert again["auth_time"] > first

    # A browser that strips max_age: the provider answers no auth_time, and the app refuses.
    authorization = start(stack, browser, max_age="300")
    parts = urlsplit(authorization)
    stripped = parts._replace(query=urlencode([(k, v) for k, values in parse_qs(parts.query).items()
                                               for v in values if k != "max_age"])).geturl()
    refused = finish(stack, browser, stripped)
    assert refused.status_code == 302
    assert refused.headers["location"] == stack.url("/api/auth/error?error=SignInNotRecent")
    assert me(stack, browser)["auth_time"] == again["auth_time"]  # the session in place is untouched

    # A refresh keeps the sign-in's time: oidc-provider's refreshed ID token carries the same one.
    stack.op.reset_stats()
    current = me(stack, browser)
    time.sleep(max(0.0, timestamp(current["access_token_expires"]) - REFRESH_LEEWAY - time.time()) + 0.3)
    refreshed = me(stack, browser)
    assert refresh_stats(stack.op)["success"] >= 1, stack.server.log
    assert refreshed["access_token_expires"] != again["access_token_expires"]
    assert refreshed["auth_time"] == again["auth_time"]
    assert stored_id_token_claims(browser)["auth_time"] == again["auth_time"]
