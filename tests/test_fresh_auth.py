"""Fresh authentication, through both middlewares: `max_age` on the sign-in route reaches the
authorization request and the transaction, the callback checks the ID token's `auth_time`
(OpenID Connect Core 3.1.3.7, item 13), the session keeps it (a refresh does not renew it), and
a guard asks for a new sign-in when it is too old."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from conftest import Harness
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from logto_middleware import signin_url
from logto_middleware._protocol.freshness import (
    MAX_AGE_LIMIT,
    is_recent,
    keep_auth_time,
    parse_max_age,
    require_max_age,
)
from logto_middleware._protocol.tokens import decode_unverified
from logto_middleware.helpers import fresh_auth_refusal
from logto_middleware.starlette import requires_fresh_auth
from logto_middleware.testing import FakeLogto

MAX_AGE = 300
LEEWAY = 60  # LogtoConfig.clock_skew's default


def asgi_app() -> Starlette:
    async def info(request: Request) -> JSONResponse:
        auth = request.auth
        return JSONResponse({"auth_time": getattr(auth, "auth_time", None),
                             "user_auth_time": request.user.auth_time,
                             "fresh": auth.authenticated_within(MAX_AGE) if hasattr(auth, "authenticated_within")
                             else None})

    @requires_fresh_auth(MAX_AGE)
    async def sensitive(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "id": request.user.id})

    return Starlette(routes=[Route("/info", info), Route("/sensitive", sensitive)])


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A plain WSGI app using the generic helper, as docs/fresh-auth.md shows."""
    session = environ["logto.session"]
    if environ["PATH_INFO"] == "/sensitive":
        query = environ.get("QUERY_STRING", "")
        here = environ["PATH_INFO"] + (f"?{query}" if query else "")
        refusal = fresh_auth_refusal(session, MAX_AGE, here=here, base_path=environ["logto.base_path"],
                                     page="text/html" in environ.get("HTTP_ACCEPT", ""))
        if refusal is not None:
            start_response(f"{refusal.status} Refused", list(refusal.headers.items()))
            return [json.dumps(refusal.body).encode()] if refusal.body is not None else []
        body: dict[str, Any] = {"ok": True, "id": environ["logto.user"].id}
    else:
        body = {"auth_time": session.auth_time if session else None,
                "user_auth_time": environ["logto.user"].auth_time,
                "fresh": session.authenticated_within(MAX_AGE) if session else None}
    start_response("200 OK", [("content-type", "application/json")])
    return [json.dumps(body).encode()]


@pytest.fixture
def guarded(make_harness: Any) -> Harness:
    return make_harness(asgi_app=asgi_app(), wsgi_app=wsgi_app)  # type: ignore[no-any-return]


def another_process(make_harness: Any, harness: Harness, **settings: Any) -> httpx.Client:
    """A browser with `harness`'s cookies on a new middleware (no decoded-session cache): what
    the cookie itself carries."""
    other = make_harness(asgi_app=asgi_app(), wsgi_app=wsgi_app, **settings)
    for name, value in harness.client.cookies.items():
        other.client.cookies.set(name, value)
    return other.client  # type: ignore[no-any-return]


def rewrite_id_token(fake: FakeLogto, **changes: Any) -> None:
    """Make the fake's token endpoint answer ID tokens with `changes` (None removes a claim)."""

    def hook(body: dict[str, Any]) -> dict[str, Any]:
        claims = decode_unverified(body["id_token"])[1]
        for name, value in changes.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return {**body, "id_token": fake.sign_id_token(claims)}

    fake.token_response_hook = hook


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def error_code(response: httpx.Response) -> str | None:
    location = response.headers.get("location", "")
    return query_of(location).get("error", [None])[0] if "/api/auth/error" in location else None


# -- the rule and its parsing --------------------------------------------------------------------


@pytest.mark.parametrize("text", ["abc", "-1", "1.5", "+5", " 5", "5 ", "1e3", "0x10", "\u0661\u0662",
                                  "9" * 10, str(MAX_AGE_LIMIT + 1), "300,300"])
def test_parse_max_age_refuses_anything_but_bounded_ascii_digits(text: str) -> None:
    assert parse_max_age(text) is None


@pytest.mark.parametrize(("text", "value"),
                         [("0", 0), ("300", 300), ("0300", 300), (str(MAX_AGE_LIMIT), MAX_AGE_LIMIT)])
def test_parse_max_age_accepts_whole_seconds(text: str, value: int) -> None:
    assert parse_max_age(text) == value


@pytest.mark.parametrize("value", [-1, MAX_AGE_LIMIT + 1, True, 1.5, "300"])
def test_guards_refuse_an_invalid_max_age_when_declared(value: Any) -> None:
    with pytest.raises(ValueError, match="max_age"):
        require_max_age(value)
    with pytest.raises(ValueError, match="max_age"):
        requires_fresh_auth(value)
    with pytest.raises(ValueError, match="max_age"):
        signin_url("/", max_age=value)


def test_is_recent_allows_the_leeway_either_way_and_no_more() -> None:
    now = 1_000_000
    assert is_recent(now - MAX_AGE - LEEWAY, MAX_AGE, now=now, leeway=LEEWAY)
    assert not is_recent(now - MAX_AGE - LEEWAY - 1, MAX_AGE, now=now, leeway=LEEWAY)
    assert is_recent(now + LEEWAY, MAX_AGE, now=now, leeway=LEEWAY)
    assert not is_recent(now + LEEWAY + 1, MAX_AGE, now=now, leeway=LEEWAY)  # a sign-in in the future
    assert not is_recent(None, MAX_AGE, now=now, leeway=LEEWAY)


def test_keep_auth_time_keeps_the_previous_one_or_none() -> None:
    assert keep_auth_time({"sub": "a", "auth_time": 9}, {"auth_time": 1}) == {"sub": "a", "auth_time": 1}
    assert keep_auth_time({"sub": "a", "auth_time": 9}, {}) == {"sub": "a"}


def test_signin_url_carries_max_age() -> None:
    url = signin_url("/account?tab=1", max_age=0, base_path="/auth")
    assert url.startswith("/auth/signin?")
    assert query_of(url) == {"callbackUrl": ["/account?tab=1"], "max_age": ["0"]}


# -- the sign-in route and the callback, both middlewares ---------------------------------------


def test_max_age_reaches_the_authorization_request_and_a_fresh_sign_in_is_accepted(harness: Harness) -> None:
    start = harness.start_sign_in(max_age=str(MAX_AGE), callbackUrl="/after")
    assert start.status_code == 302
    assert query_of(start.headers["location"])["max_age"] == [str(MAX_AGE)]
    callback = harness.client.get(harness.fake.authorize(start.headers["location"], login="alice"))
    assert callback.status_code == 302
    assert callback.headers["location"] == "http://localhost:3000/after"
    assert harness.me()["authenticated"] is True


def test_no_max_age_no_parameter(harness: Harness) -> None:
    start = harness.start_sign_in()
    assert "max_age" not in query_of(start.headers["location"])


def test_an_old_auth_time_is_refused_when_max_age_was_asked(harness: Harness) -> None:
    now = int(harness.clock())
    rewrite_id_token(harness.fake, auth_time=now - MAX_AGE - LEEWAY - 1)  # a provider that ignored max_age
    response = harness.sign_in(max_age=str(MAX_AGE))
    assert error_code(response) == "SignInNotRecent"
    assert harness.session_cookie_names() == []
    assert harness.me()["authenticated"] is False
    page = harness.client.get(response.headers["location"], headers={"accept": "text/html"})
    assert page.status_code == 400
    assert b"SignInNotRecent" in page.content


def test_an_auth_time_within_the_leeway_is_accepted(harness: Harness) -> None:
    rewrite_id_token(harness.fake, auth_time=int(harness.clock()) - MAX_AGE - LEEWAY)
    response = harness.sign_in(max_age=str(MAX_AGE))
    assert error_code(response) is None, response.headers["location"]
    assert harness.me()["authenticated"] is True


def test_the_same_old_auth_time_passes_when_max_age_was_not_asked(harness: Harness) -> None:
    rewrite_id_token(harness.fake, auth_time=int(harness.clock()) - 10 * MAX_AGE)
    assert error_code(harness.sign_in()) is None
    assert harness.me()["authenticated"] is True


@pytest.mark.parametrize("auth_time", [None, "yesterday", True, float("nan")])
def test_a_missing_or_malformed_auth_time_is_refused_when_max_age_was_asked(harness: Harness, auth_time: Any) -> None:
    rewrite_id_token(harness.fake, auth_time=auth_time if auth_time is not None else None)
    response = harness.sign_in(max_age=str(MAX_AGE))
    assert error_code(response) == "SignInNotRecent"
    assert harness.session_cookie_names() == []


def test_an_auth_time_in_the_future_is_refused(harness: Harness) -> None:
    rewrite_id_token(harness.fake, auth_time=int(harness.clock()) + LEEWAY + 5)
    assert error_code(harness.sign_in(max_age=str(MAX_AGE))) == "SignInNotRecent"


def test_max_age_zero_asks_for_a_new_sign_in_and_accepts_it(harness: Harness) -> None:
    response = harness.sign_in(max_age="0")
    assert error_code(response) is None
    assert harness.me()["authenticated"] is True
    authorize = [params for _, path, params in harness.fake.requests if path.endswith("/auth")]
    assert authorize[-1]["max_age"] == "0"


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "99999999999", str(MAX_AGE_LIMIT + 1), "\u0661"])
def test_a_garbage_max_age_is_a_400_and_starts_nothing(harness: Harness, value: str) -> None:
    response = harness.start_sign_in(max_age=value)
    assert response.status_code == 400
    assert b"InvalidMaxAge" in response.content
    assert not any(name.startswith("logto.transaction") for name in harness.client.cookies)
    assert harness.fake.counts["authorize"] == 0
    as_json = harness.client.get("/api/auth/signin", params={"max_age": value}, headers={"accept": "application/json"})
    assert (as_json.status_code, as_json.json()) == (400, {"error": "InvalidMaxAge"})


def test_an_empty_max_age_is_no_max_age(harness: Harness) -> None:
    response = harness.start_sign_in(max_age="")
    assert response.status_code == 302
    assert "max_age" not in query_of(response.headers["location"])


# -- the session keeps auth_time ----------------------------------------------------------------


def test_the_session_keeps_auth_time(guarded: Harness, make_harness: Any) -> None:
    signed_in_at = int(guarded.clock())
    guarded.sign_in(max_age=str(MAX_AGE))
    info = guarded.client.get("/info").json()
    assert info == {"auth_time": signed_in_at, "user_auth_time": signed_in_at, "fresh": True}
    assert another_process(make_harness, guarded).get("/info").json() == info  # read from the cookie
    guarded.clock.advance(MAX_AGE + LEEWAY + 1)
    assert guarded.client.get("/info").json()["fresh"] is False


def test_a_refresh_does_not_renew_auth_time(guarded: Harness, make_harness: Any) -> None:
    signed_in_at = int(guarded.clock())
    guarded.sign_in(max_age=str(MAX_AGE))
    guarded.clock.advance(guarded.fake.access_token_ttl)  # the access token is due: this request refreshes
    # A provider that (against OpenID Connect Core 12.2) says the refresh was a new sign-in.
    rewrite_id_token(guarded.fake, auth_time=int(guarded.clock()))
    info = guarded.client.get("/info").json()
    assert guarded.fake.counts["token:refresh_token"] == 1
    assert info == {"auth_time": signed_in_at, "user_auth_time": signed_in_at, "fresh": False}
    assert another_process(make_harness, guarded).get("/info").json()["auth_time"] == signed_in_at  # as stored


# -- the guards (Starlette's decorator under ASGI, the generic helper under WSGI) ----------------


def test_guard_redirects_a_page_to_a_fresh_sign_in_and_lets_it_back(guarded: Harness) -> None:
    guarded.sign_in()  # signed in, recency unknown to the guard until Logto says
    guarded.clock.advance(MAX_AGE + LEEWAY + 1)
    page = guarded.client.get("/sensitive?a=1", headers={"accept": "text/html"})
    assert page.status_code == 303
    location = page.headers["location"]
    assert location.startswith("/api/auth/signin?")
    assert query_of(location) == {"callbackUrl": ["/sensitive?a=1"], "max_age": [str(MAX_AGE)]}
    start = guarded.client.get(location)
    assert query_of(start.headers["location"])["max_age"] == [str(MAX_AGE)]
    back = guarded.client.get(guarded.fake.authorize(start.headers["location"], login="alice"))
    assert back.headers["location"] == "http://localhost:3000/sensitive?a=1"
    assert guarded.client.get("/sensitive?a=1", headers={"accept": "text/html"}).json()["ok"] is True


def test_guard_answers_an_api_401_with_a_step_up_challenge(guarded: Harness) -> None:
    guarded.sign_in(max_age=str(MAX_AGE))
    assert guarded.client.get("/sensitive").json()["ok"] is True
    guarded.clock.advance(MAX_AGE + LEEWAY + 1)
    response = guarded.client.get("/sensitive", headers={"accept": "application/json"})
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge
    assert f'max_age="{MAX_AGE}"' in challenge
    assert response.json()["max_age"] == MAX_AGE
    assert query_of(response.json()["signin_url"])["max_age"] == [str(MAX_AGE)]


def test_guard_refuses_an_anonymous_request(guarded: Harness) -> None:
    assert guarded.client.get("/sensitive").status_code == 401
    assert guarded.client.get("/sensitive", headers={"accept": "text/html"}).status_code == 303


def test_guard_accepts_an_authjs_session_after_a_fresh_sign_in(make_harness: Any) -> None:
    """The Auth.js cookie keeps `auth_time` too: without it the guard would send the user to
    sign in again after every sign-in."""
    harness = make_harness(asgi_app=asgi_app(), wsgi_app=wsgi_app, session_format="authjs")
    harness.sign_in(max_age=str(MAX_AGE))
    browser = another_process(make_harness, harness, session_format="authjs")
    assert browser.get("/sensitive", headers={"accept": "text/html"}).status_code == 200
