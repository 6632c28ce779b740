"""Cookie sessions: rolling, chunking, secret rotation, tolerant parsing, make_session_cookie."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import ORIGIN, SECRET, Clock, Harness, asgi_echo_app
from starlette.testclient import TestClient

from logto_middleware import LogtoASGIMiddleware, LogtoConfig
from logto_middleware._sessions.cookies import (
    CHUNK_SIZE,
    DuplicateCookie,
    find_cookie,
    parse_cookie_header,
    read_chunked,
    write_chunked,
)
from logto_middleware.session import SessionData
from logto_middleware.testing import FakeLogto, make_session_cookie


def session_set_cookies(response: Any) -> list[str]:
    return [c for c in response.headers.get_list("set-cookie") if c.startswith("logto.session-token")]


def test_unchanged_session_is_not_rewritten(harness: Harness) -> None:
    harness.sign_in("alice")
    response = harness.client.get("/")
    assert session_set_cookies(response) == []


def test_session_rolls_after_update_age(harness: Harness) -> None:
    harness.fake.access_token_ttl = 10 * 86400  # no refresh in the way
    harness.sign_in("alice")
    harness.clock.advance(harness.config.session_update_age - 10)
    assert session_set_cookies(harness.client.get("/")) == []
    harness.clock.advance(20)
    rolled = session_set_cookies(harness.client.get("/"))
    assert len(rolled) == 1 and f"Max-Age={harness.config.session_max_age}" in rolled[0]


def test_session_expires_after_max_age_of_inactivity(make_harness: Any, clock: Clock) -> None:
    harness: Harness = make_harness(session_max_age=3600, session_update_age=600)
    harness.sign_in("alice")
    cookie = harness.client.cookies["logto.session-token"]
    clock.advance(3601)
    # A browser would have dropped it; a hostile one sends it anyway.
    response = harness.client.get("/", headers={"cookie": f"logto.session-token={cookie}"})
    assert response.json()["authenticated"] is False
    assert any("Max-Age=0" in c for c in session_set_cookies(response))


def test_active_session_stays_alive_past_max_age(make_harness: Any, clock: Clock) -> None:
    harness: Harness = make_harness(session_max_age=3600, session_update_age=600)
    harness.sign_in("alice")
    for _ in range(12):  # 12 x 700 s = 2h20 of activity, never 1h idle
        clock.advance(700)
        assert harness.me()["authenticated"] is True


def test_big_session_is_chunked_and_leftover_chunks_cleared(harness: Harness) -> None:
    harness.fake.users["big"] = {"bio": "x" * 9000}
    harness.sign_in("big")
    names = harness.session_cookie_names()
    assert len(names) >= 3
    assert sorted(names) == sorted(f"logto.session-token.{i}" for i in range(len(names)))
    assert all(len(harness.client.cookies[name]) <= CHUNK_SIZE for name in names)
    assert harness.me()["authenticated"] is True
    # Signing in again as a small user: the session fits in one cookie, the chunks go.
    response = harness.sign_in("alice")
    cleared = [c.split("=")[0] for c in response.headers.get_list("set-cookie") if "Max-Age=0" in c]
    assert set(names) <= set(cleared)
    assert harness.me()["name"] == "Alice"


def test_tampered_cookie_is_anonymous_and_cleared(harness: Harness) -> None:
    harness.sign_in("alice")
    value = harness.client.cookies["logto.session-token"]
    forged = value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB")
    harness.client.cookies.clear()
    response = harness.client.get("/", headers={"cookie": f"logto.session-token={forged}"})
    assert response.status_code == 200 and response.json()["authenticated"] is False
    assert any("Max-Age=0" in c for c in session_set_cookies(response))


def test_secret_rotation(kind: str, fake: FakeLogto, clock: Clock) -> None:
    old, new = "old-secret-" + "o" * 30, "new-secret-" + "n" * 30
    before = Harness(kind, fake, clock, secret=old)
    before.sign_in("alice")
    cookie = "; ".join(f"{k}={v}" for k, v in before.client.cookies.items())
    rotated = Harness(kind, fake, clock, secret=[new, old])
    assert rotated.client.get("/", headers={"cookie": cookie}).json()["authenticated"] is True
    dropped = Harness(kind, fake, clock, secret=[new])
    assert dropped.client.get("/", headers={"cookie": cookie}).json()["authenticated"] is False


def test_other_apps_cookies_never_hide_ours(harness: Harness) -> None:
    harness.sign_in("alice")
    ours = harness.client.cookies["logto.session-token"]
    harness.client.cookies.clear()
    noisy = ('other={"json": "value", "x": [1,2]}; quoted="a b; c"; weird=\\x00\\; =novalue; noequals; '
             f'logto.session-token={ours}; trailing=%E2%82%AC; b64=abc==; sp=a b')
    response = harness.client.get("/", headers={"cookie": noisy})
    assert response.json()["authenticated"] is True


def test_parse_cookie_header_is_tolerant() -> None:
    cookies = parse_cookie_header('a=1; b="quoted"; {"json":1}; c=x=y; a=2;;  ; d=')
    assert cookies["a"] == "1" and cookies["b"] == "quoted" and cookies["c"] == "x=y" and cookies["d"] == ""


def test_parse_cookie_header_records_names_sent_twice() -> None:
    cookies = parse_cookie_header("a=1; b=2; a=3; c=4; b=5")
    assert cookies["a"] == "1" and cookies.duplicates == {"a", "b"}
    with pytest.raises(DuplicateCookie):
        cookies.only("a")
    assert cookies.only("c") == "4" and cookies.only("missing") is None


@pytest.mark.parametrize("header", [
    "n=1", " n = 1 ", "x=1; n=2", "n=1; x=2", "n=1;x=2;n=3", "x=1; n=2; y=3; n=4", "n=1; n=2", "xn=1; n=2",
    "n.0=1; n=2", "n=1; n.0=2", "a=n=1; n=2", "a=1;  n =2; b=3;n=4", 'n="q"; x=1', "x=n; y=n=1", "", "n", "n=",
    "n=1; nn=2; n.1=3", "x=1; n=2 ; n=3",
])
def test_find_cookie_agrees_with_the_parser(header: str) -> None:
    parsed = parse_cookie_header(header)
    if "n" in parsed.duplicates:
        with pytest.raises(DuplicateCookie):
            find_cookie(header, "n")
    else:
        assert find_cookie(header, "n") == parsed.get("n")


def test_chunks_round_trip() -> None:
    value = "v" * (CHUNK_SIZE * 2 + 10)
    headers = write_chunked("n", value, max_age=60, secure=False, present=["n", "n.7"])
    jar = {h.split("=", 1)[0]: h.split("=", 1)[1].split(";")[0] for h in headers if "Max-Age=60" in h}
    assert sorted(jar) == ["n.0", "n.1", "n.2"]
    assert read_chunked(jar, "n")[0] == value
    deleted = [h.split("=", 1)[0] for h in headers if "Max-Age=0" in h]
    assert sorted(deleted) == ["n", "n.7"]


def test_make_session_cookie_opens_protected_pages() -> None:
    config = LogtoConfig(issuer="https://tenant.logto.app/oidc", client_id="id", client_secret="s", secret=SECRET)
    app = LogtoASGIMiddleware(asgi_echo_app(), config)
    client = TestClient(app, base_url=ORIGIN)
    cookie = make_session_cookie(config, {"sub": "u1", "name": "Una"}, access_token="at-1")
    body = client.get("/", headers={"cookie": cookie}).json()
    assert body["authenticated"] is True and body["id"] == "u1" and body["name"] == "Una"
    assert body["access_token"] == "at-1"
    assert client.get("/protected", headers={"cookie": cookie}).status_code == 200
    assert client.get("/protected").status_code == 401


@pytest.mark.parametrize("scheme", ["https"])
def test_https_cookies_are_secure_and_prefixed(kind: str, fake: FakeLogto, clock: Clock, scheme: str) -> None:
    harness = Harness(kind, fake, clock, base_url=f"{scheme}://app.example")
    start = harness.start_sign_in()
    cookie = start.headers["set-cookie"]
    assert cookie.startswith("__Host-logto.transaction.") and "Secure" in cookie and "Path=/" in cookie
    csrf = harness.client.get("/api/auth/csrf").headers["set-cookie"]
    assert csrf.startswith("__Host-logto.csrf-token=") and "Secure" in csrf and "Path=/" in csrf


def test_make_session_cookie_keeps_given_claims_beside_an_id_token() -> None:
    config = LogtoConfig(issuer="https://tenant.logto.app/oidc", client_id="id", client_secret="s", secret=SECRET)
    client = TestClient(LogtoASGIMiddleware(asgi_echo_app(), config), base_url=ORIGIN)
    cookie = make_session_cookie(config, {"sub": "bob", "name": "Bob"}, id_token="not-a-jwt")
    body = client.get("/", headers={"cookie": cookie}).json()
    assert body["authenticated"] is True and body["id"] == "bob" and body["name"] == "Bob"


def test_make_session_cookie_stores_claims_once_when_they_are_the_id_token_s(fake: FakeLogto) -> None:
    config = LogtoConfig(issuer="https://tenant.logto.app/oidc", client_id="id", client_secret="s", secret=SECRET)
    claims = {"sub": "u1", "name": "Una", "username": "una", "email": "u@example.com", "picture": "https://p/u.png"}
    id_token = fake.sign_id_token(claims)
    same = make_session_cookie(config, claims, id_token=id_token)
    other = make_session_cookie(config, {**claims, "name": "Someone Else"}, id_token=id_token)
    assert len(same) + 100 < len(other)  # the claims are not stored twice
    client = TestClient(LogtoASGIMiddleware(asgi_echo_app(), config), base_url=ORIGIN)
    assert client.get("/", headers={"cookie": same}).json()["name"] == "Una"
    assert client.get("/", headers={"cookie": other}).json()["name"] == "Someone Else"


@pytest.mark.parametrize("member", ["tokens", "fields"])
@pytest.mark.parametrize("value", [[], 1, "s", None])
def test_stored_session_whose_extra_members_are_not_objects_is_no_session(member: str, value: object) -> None:
    """The members of `extra` the package reads (`resource_token`, the Auth.js codec) call `.get`
    on them: a stored session where one is not an object is refused as a whole, not an
    AttributeError later (issue 21, finding 3: no non-object JSON may reach a `.get`)."""
    stored = {"claims": {"sub": "u1"}, "expires_at": 2, "updated_at": 1, "extra": {member: value}}
    assert SessionData.from_json(json.dumps(stored).encode()) is None
    stored["extra"] = {member: {}}
    data = SessionData.from_json(json.dumps(stored).encode())
    assert data is not None and data.resource_token("https://api.example") is None
