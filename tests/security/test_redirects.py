"""Open redirects and header injection through `callbackUrl`, at sign-in and at sign-out.

Values are given as they travel on the wire (already percent-encoded), so both the encoded and
the decoded forms of each trick reach the middleware. The Location of every answer is parsed
and its origin compared with the app's; a Location with anything a browser would strip or fold
(tab, newline, backslash, non-ASCII) fails too.
"""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from conftest import ORIGIN, Harness

from .security_support import (
    assert_safe_location,
    assert_signed_in,
    is_own_cookie,
    origin_of,
    parse_set_cookie,
    query_of,
)

PLAIN = [
    "https://evil.example", "https://evil.example/steal?x=1", "//evil.example", "///evil.example",
    "/\\evil.example", "\\/evil.example", "\\\\/evil.example", "/\\/evil.example", "\\\\evil.example",
    "https:evil.example", "https:/evil.example", "https:///evil.example", "javascript:alert(1)",
    "JaVaScRiPt:alert(1)", "data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)",
    "HTTPS://EVIL.EXAMPLE", "HTTP://evil.example", "//EVIL.EXAMPLE", " //evil.example", "/ /evil.example",
    "/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "\t//evil.example", "ht\ttps://evil.example",
    "java\nscript:alert(1)", "/\x00/evil.example", "\x0b//evil.example", "/\x7f/evil.example",
    "http://localhost:3000@evil.example", "http://localhost:3000@evil.example/", "http://evil.example\\@localhost:3000",
    "http://evil.example#@localhost:3000", "http://evil.example?@localhost:3000", "http://localhost:3000.evil.example/",
    "http://localhost:3000\\@evil.example", "https://localhost:3000/", "http://localhost:3001/",
    "http://LOCALHOST:3000:80@evil.example", "\u2215\u2215evil.example", "\uff0f\uff0fevil.example",
]
RAW = [
    "%2F%2Fevil.example", "%252F%252Fevil.example", "/%5Cevil.example", "/%255Cevil.example", "%5C%5Cevil.example",
    "%2F%5Cevil.example", "/%2F/evil.example", "%09//evil.example", "/%09/evil.example", "/%0a/evil.example",
    "%0d%0aSet-Cookie:x=1", "/%0d%0aSet-Cookie:x=1", "/foo%0d%0aSet-Cookie:%20x=1", "/%0aLocation:%20https://evil.example",
    "/foo%0d%0a%0d%0a<script>alert(1)</script>", "https%3A%2F%2Fevil.example", "javascript%3Aalert(1)",
    "%68ttps://evil.example", "/%2e%2e/%2e%2e//evil.example", "/..//evil.example",
]
CASES = [pytest.param(quote(v, safe=""), id=f"plain:{v!r}") for v in PLAIN] + [
    pytest.param(v, id=f"raw:{v}") for v in RAW]


def assert_no_injection(response: httpx.Response) -> None:
    """Only the middleware's own cookies, no header named after the payload."""
    for header in response.headers.get_list("set-cookie"):
        name, _, _ = parse_set_cookie(header)
        assert is_own_cookie(name), header
    assert "x" not in {k.lower() for k in response.headers}
    for value in response.headers.values():
        assert "\r" not in value and "\n" not in value


def finish(site: Harness, start: httpx.Response) -> httpx.Response:
    assert start.status_code == 302, start.text
    assert origin_of(start.headers["location"]) == site.fake.origin
    assert_no_injection(start)
    return site.client.get(site.fake.authorize(start.headers["location"], login="alice"))


@pytest.mark.parametrize("raw", CASES)
def test_sign_in_callback_url_never_leaves_the_origin(site: Harness, raw: str) -> None:
    callback = finish(site, site.client.get(f"/api/auth/signin?callbackUrl={raw}"))
    assert_signed_in(site, callback)
    assert_safe_location(callback.headers["location"])
    assert_no_injection(callback)


@pytest.mark.parametrize("raw", CASES)
def test_sign_in_post_callback_url_never_leaves_the_origin(site: Harness, raw: str) -> None:
    start = site.client.post("/api/auth/signin", content=f"callbackUrl={raw}",
                             headers={"origin": ORIGIN, "content-type": "application/x-www-form-urlencoded"})
    callback = finish(site, start)
    assert_safe_location(callback.headers["location"])


@pytest.mark.parametrize("raw", CASES)
def test_sign_out_callback_url_never_leaves_the_origin(site: Harness, raw: str) -> None:
    response = site.client.post("/api/auth/signout", content=f"callbackUrl={raw}",
                                headers={"origin": ORIGIN, "content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 302
    assert_safe_location(response.headers["location"])
    assert_no_injection(response)
    by_query = site.client.post(f"/api/auth/signout?callbackUrl={raw}", headers={"origin": ORIGIN})
    assert by_query.status_code == 302
    assert_safe_location(by_query.headers["location"])


@pytest.mark.parametrize("raw", CASES)
def test_sign_out_json_url_never_leaves_the_origin(site: Harness, raw: str) -> None:
    # Auth.js's client asks for the target as JSON (X-Auth-Return-Redirect).
    response = site.client.post("/api/auth/signout", content=f"callbackUrl={raw}", headers={
        "origin": ORIGIN, "content-type": "application/x-www-form-urlencoded", "x-auth-return-redirect": "1"})
    assert response.status_code == 200
    assert_safe_location(response.json()["url"])


@pytest.mark.parametrize("raw", CASES[::4])
def test_signed_in_sign_out_returns_to_the_origin_only(site: Harness, raw: str) -> None:
    assert_signed_in(site, site.sign_in("alice"))
    response = site.client.post("/api/auth/signout", content=f"callbackUrl={raw}",
                                headers={"origin": ORIGIN, "content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(site.fake.url("/session/end") + "?")
    back = parse_qs(urlsplit(location).query)["post_logout_redirect_uri"]
    assert len(back) == 1
    assert_safe_location(back[0])
    assert_no_injection(response)


@pytest.mark.parametrize("host", ["evil.example\n", "localhost:3000\n", "evil.example:3000\n"])
def test_host_with_a_trailing_newline_never_reaches_a_location(site: Harness, host: str) -> None:
    """A Host header ending in a newline is malformed (a `$` anchor would accept it): every URL
    built from the request's origin stays on the app's origin and carries no newline."""
    start = site.client.get("/api/auth/signin", params={"callbackUrl": "/after"}, headers={"host": host})
    assert start.status_code == 302, start.text
    assert_no_injection(start)
    assert_safe_location(query_of(start.headers["location"])["redirect_uri"])
    error = site.client.get("/api/auth/callback/logto", headers={"host": host})  # no transaction: error page
    assert_safe_location(error.headers["location"])
    out = site.client.post("/api/auth/signout", headers={"host": host, "origin": ORIGIN})
    assert out.status_code == 302, out.text
    assert_safe_location(out.headers["location"])
    assert_no_injection(out)


NON_ASCII = ["/caf%C3%A9", "/%E2%82%AC", "/%F0%9F%98%80", "/%E2%80%AEevil.example", "/%C2%A0", "/%FF%FE"]


@pytest.mark.parametrize("raw", NON_ASCII)
def test_non_ascii_callback_url_at_sign_in_is_not_a_500(site: Harness, raw: str) -> None:
    """Non-ASCII targets must come back percent-encoded (or fall back), never crash the
    response: ASGI servers encode header values as latin-1 and WSGI requires latin-1 `str`."""
    start = site.client.get(f"/api/auth/signin?callbackUrl={raw}")
    callback = finish(site, start)
    assert callback.status_code == 302
    assert_safe_location(callback.headers["location"])


@pytest.mark.parametrize("raw", NON_ASCII)
def test_non_ascii_callback_url_at_sign_out_is_not_a_500(site: Harness, raw: str) -> None:
    response = site.client.post("/api/auth/signout", content=f"callbackUrl={raw}",
                                headers={"origin": ORIGIN, "content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 302
    assert_safe_location(response.headers["location"])


def test_same_origin_paths_are_kept(site: Harness) -> None:
    # Control: legitimate targets survive (so the tests above do not pass by dropping everything).
    callback = finish(site, site.client.get("/api/auth/signin", params={"callbackUrl": "/profile?tab=1#top"}))
    assert callback.headers["location"] == f"{ORIGIN}/profile?tab=1#top"
    site.client.cookies.clear()
    callback = finish(site, site.client.get("/api/auth/signin", params={"callbackUrl": f"{ORIGIN}/x"}))
    assert callback.headers["location"] == f"{ORIGIN}/x"
    out = site.client.post("/api/auth/signout", data={"callbackUrl": "/bye"}, headers={"origin": ORIGIN})
    assert query_of(out.headers["location"])["post_logout_redirect_uri"] == f"{ORIGIN}/"
