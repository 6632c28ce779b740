"""A user's devices: the sessions listed (created, last seen, browser, the current one marked) and
ended one by one or all but the current one, their refresh tokens revoked at the provider; through
both middlewares, on the memory store, a real Redis and the cookie store."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from conftest import ORIGIN, Clock, Harness

from logto_middleware._sessions.devices import (
    UNKNOWN_BROWSER,
    SessionHandles,
    describe_user_agent,
    device_of,
    seen,
    started,
)
from logto_middleware.flow import SyncDriver
from logto_middleware.session import SessionData
from logto_middleware.stores import MemoryStore, RedisStore, ServerSessions, SessionStore
from logto_middleware.testing import FakeLogto

FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                 "Version/17.5 Mobile/15E148 Safari/604.1")
CHROME_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/131.0.0.0 Safari/537.36")
SAME_ORIGIN = {"origin": ORIGIN}
END = "/api/auth/sessions/end"
LIST = "/api/auth/sessions"


# -- the User-Agent parser ---------------------------------------------------------------------

@pytest.mark.parametrize(("user_agent", "expected"), [
    (FIREFOX_LINUX, "Firefox on Linux"),
    (SAFARI_IPHONE, "Safari on iPhone"),
    (CHROME_WINDOWS, "Chrome on Windows"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
     "Safari/605.1.15", "Safari on macOS"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
     "Safari/537.36 Edg/131.0.2903.86", "Edge on Windows"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.39 "
     "Mobile Safari/537.36", "Chrome on Android"),
    ("Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 "
     "Chrome/122.0.0.0 Mobile Safari/537.36", "Samsung Internet on Android"),
    ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 "
     "Mobile/15E148 Safari/604.1", "Chrome on iPad"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "FxiOS/133.0 Mobile/15E148 Safari/605.1.15", "Firefox on iPhone"),
    ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
     "Safari/537.36", "Chrome on ChromeOS"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
     "Safari/537.36 OPR/115.0.0.0", "Opera on Windows"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14.7; rv:133.0) Gecko/20100101 Firefox/133.0", "Firefox on macOS"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
     "Chrome on Linux"),
    ("Mozilla/5.0 (Nintendo Switch; WifiWebAuthApplet) AppleWebKit/606.4 (KHTML, like Gecko) NF/6.0.1.15.4 "
     "NintendoBrowser/5.1.0.20393", UNKNOWN_BROWSER),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Mobile/15E148", UNKNOWN_BROWSER),  # an in-app web view: not Safari
    ("Mozilla/5.0 (Unknown) Firefox/133.0", "Firefox"),
    ("curl/8.5.0", UNKNOWN_BROWSER),
    ("python-httpx/0.28.1", UNKNOWN_BROWSER),
    ("", UNKNOWN_BROWSER),
    (None, UNKNOWN_BROWSER),
    ("Mozilla/5.0 " + "A" * 100_000 + " Firefox/1", UNKNOWN_BROWSER),  # only the start is read
    ("Mozilla/5.0 <script>alert(1)</script> Firefox/1", "Firefox"),  # the description is ours, never theirs
])
def test_user_agent_descriptions(user_agent: str | None, expected: str) -> None:
    assert describe_user_agent(user_agent) == expected


def test_device_is_kept_in_extra_and_sessions_without_it_still_load() -> None:
    old = SessionData.from_json(b'{"expires_at":2000,"updated_at":1000,"claims":{"sub":"u"}}')
    assert old is not None
    assert device_of(old, "h").created_at is None
    assert device_of(old, "h").last_seen_at == 1000  # the last write known: the last roll
    assert device_of(old, "h").description == UNKNOWN_BROWSER
    assert device_of(seen(old, 1500), "h").last_seen_at == 1500

    data = started(old, 1200, FIREFOX_LINUX)
    raw = data.to_json()
    # A version that knows no device reads it as any other member of `extra`: a rolling
    # deployment (old and new workers at once) signs no one out.
    assert json.loads(raw)["extra"] == {"device": {"created": 1200, "seen": 1200, "agent": "Firefox on Linux"}}
    loaded = SessionData.from_json(raw)
    assert loaded is not None
    device = device_of(seen(loaded, 1300), "h", current=True)
    assert (device.created_at, device.last_seen_at, device.description, device.current) == (
        1200, 1300, "Firefox on Linux", True)
    # Something that is not ours in the device member (it is authenticated, but still) shows as unknown.
    odd = loaded.with_changes(extra={"device": {"created": "x", "seen": True, "agent": 5}})
    assert device_of(odd, "h") == device_of(old, "h")


def test_handles_are_keyed_hmacs_that_survive_a_secret_rotation() -> None:
    before = SessionHandles(["old-secret-0123456789-abcdefghijklmnop"])
    after = SessionHandles(["new-secret-0123456789-abcdefghijklmnop", "old-secret-0123456789-abcdefghijklmnop"])
    handle = before.handle("session-id")
    assert "session-id" not in handle and len(handle) == 64
    assert after.matches("session-id", handle) and after.matches("session-id", after.handle("session-id"))
    assert not after.matches("other-id", handle)
    assert not SessionHandles(["another-secret-0123456789-abcdefghijk"]).matches("session-id", handle)
    assert not after.matches("session-id", "é" * 64)


# -- the routes, through both middlewares ----------------------------------------------------

class NoMembers:
    """A custom store written for a version before `members`: the route must not fail on it."""

    def __init__(self, inner: MemoryStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "members":
            raise AttributeError(name)
        return getattr(self._inner, name)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, clock: Clock) -> Iterator[SessionStore]:
    if request.param == "memory":
        yield MemoryStore(clock=clock)
        return
    redis_store = RedisStore.from_url(request.getfixturevalue("redis_url"))
    yield redis_store
    redis_store.close()


def browser(harness: Harness, user_agent: str, login: str = "alice") -> httpx.Client:
    """A new browser signed in as `login`, sending `user_agent`."""
    client = harness.browser()
    client.headers["user-agent"] = user_agent
    harness.client = client
    landed = harness.sign_in(login)
    assert landed.status_code == 302, landed.text
    return client


def refresh_token_of(harness: Harness, client: httpx.Client) -> str:
    """The refresh token kept for `client`'s session (read from the store, as the server can)."""
    sessions = harness.middleware.core.manager.sessions
    cookie = client.cookies["logto.session-token"]
    if isinstance(sessions, ServerSessions):
        data = SyncDriver(httpx.Client()).run(sessions.load(cookie))
    else:
        data = SyncDriver(httpx.Client()).run(sessions.load(cookie, "logto.session-token"))
    assert data is not None and data.refresh_token
    return data.refresh_token


def refresh_grant(fake: FakeLogto, refresh_token: str) -> httpx.Response:
    with fake.httpx_client() as client:
        return client.post(fake.url("/token"), data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                           auth=(fake.client_id, fake.client_secret))


def signed_in(client: httpx.Client) -> bool:
    return bool(client.get("/").json()["authenticated"])


def listing(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get(LIST)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    sessions: list[dict[str, Any]] = response.json()["sessions"]
    return sessions


def test_list_marks_the_current_session_and_hides_session_ids(make_harness: Callable[..., Harness],
                                                              store: SessionStore, clock: Clock) -> None:
    harness = make_harness(store=store)
    laptop = browser(harness, FIREFOX_LINUX)
    clock.advance(60)
    phone = browser(harness, SAFARI_IPHONE)
    browser(harness, CHROME_WINDOWS, login="bob")
    response = laptop.get(LIST)
    assert response.json()["serverSide"] is True
    sessions = response.json()["sessions"]
    assert [(s["description"], s["current"]) for s in sessions] == [("Firefox on Linux", True),
                                                                    ("Safari on iPhone", False)]
    assert sessions[0]["created"] == "2027-01-15T08:00:00Z"
    assert sessions[1]["created"] == sessions[1]["lastSeen"] == "2027-01-15T08:01:00Z"
    from_phone = listing(phone)
    assert [(s["description"], s["current"]) for s in from_phone] == [("Safari on iPhone", True),
                                                                      ("Firefox on Linux", False)]
    assert {s["id"] for s in from_phone} == {s["id"] for s in sessions}
    # The session ids (bearer secrets) appear nowhere: the handles are HMACs of them.
    manager = harness.middleware.core.manager
    assert isinstance(manager.sessions, ServerSessions)
    for client in (laptop, phone):
        sid = manager.sessions.session_id(client.cookies["logto.session-token"])
        assert sid is not None and sid not in response.text and sid not in json.dumps(from_phone)


def test_ending_a_device_signs_it_out_and_revokes_its_refresh_token(
        make_harness: Callable[..., Harness], store: SessionStore, fake: FakeLogto) -> None:
    harness = make_harness(store=store)
    laptop = browser(harness, FIREFOX_LINUX)
    phone = browser(harness, SAFARI_IPHONE)
    phone_token, laptop_token = refresh_token_of(harness, phone), refresh_token_of(harness, laptop)
    other = next(s["id"] for s in listing(laptop) if not s["current"])
    ended = laptop.post(END, json={"session": other}, headers=SAME_ORIGIN)
    assert ended.status_code == 200, ended.text
    assert ended.json() == {"ended": 1, "revoked": 1}
    assert not ended.headers.get_list("set-cookie")  # this browser's own session goes on
    assert signed_in(laptop) and not signed_in(phone)
    refused = refresh_grant(fake, phone_token)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert refresh_grant(fake, laptop_token).status_code == 200
    assert [s["current"] for s in listing(laptop)] == [True]
    # Ended already: the same id is now unknown.
    again = laptop.post(END, json={"session": other}, headers=SAME_ORIGIN)
    assert again.status_code == 404 and again.json()["error"] == "NotFound"


def test_ending_all_other_devices(make_harness: Callable[..., Harness], store: SessionStore,
                                  fake: FakeLogto) -> None:
    harness = make_harness(store=store)
    laptop = browser(harness, FIREFOX_LINUX)
    phone = browser(harness, SAFARI_IPHONE)
    desktop = browser(harness, CHROME_WINDOWS)
    bob = browser(harness, CHROME_WINDOWS, login="bob")
    tokens = [refresh_token_of(harness, client) for client in (phone, desktop)]
    ended = laptop.post(END, data={"others": "1"}, headers=SAME_ORIGIN)  # a form works as well
    assert ended.status_code == 200, ended.text
    assert ended.json() == {"ended": 2, "revoked": 2}
    assert signed_in(laptop) and signed_in(bob)
    assert not signed_in(phone) and not signed_in(desktop)
    assert all(refresh_grant(fake, token).json()["error"] == "invalid_grant" for token in tokens)
    assert len(listing(laptop)) == 1 and len(listing(bob)) == 1


def test_a_user_cannot_end_another_users_session(make_harness: Callable[..., Harness], store: SessionStore) -> None:
    harness = make_harness(store=store)
    alice = browser(harness, FIREFOX_LINUX)
    bob = browser(harness, SAFARI_IPHONE, login="bob")
    alices = listing(alice)[0]["id"]
    refused = bob.post(END, json={"session": alices}, headers=SAME_ORIGIN)
    assert refused.status_code == 404
    assert signed_in(alice)


def test_ending_the_current_session_signs_this_browser_out(make_harness: Callable[..., Harness],
                                                           store: SessionStore) -> None:
    harness = make_harness(store=store)
    laptop = browser(harness, FIREFOX_LINUX)
    phone = browser(harness, SAFARI_IPHONE)
    mine = next(s["id"] for s in listing(laptop) if s["current"])
    ended = laptop.post(END, json={"session": mine}, headers=SAME_ORIGIN)
    assert ended.status_code == 200 and ended.json()["ended"] == 1
    assert any("Max-Age=0" in cookie for cookie in ended.headers.get_list("set-cookie"))
    assert not signed_in(laptop) and signed_in(phone)


def test_last_seen_moves_when_the_session_is_written(make_harness: Callable[..., Harness], store: SessionStore,
                                                     clock: Clock) -> None:
    harness = make_harness(store=store, session_update_age=3600)
    laptop = browser(harness, FIREFOX_LINUX)
    phone = browser(harness, SAFARI_IPHONE)
    first = next(s for s in listing(laptop) if not s["current"])
    clock.advance(600)
    assert signed_in(phone)  # a request, no write (neither the roll nor a refresh is due)
    assert next(s for s in listing(laptop) if not s["current"])["lastSeen"] == first["lastSeen"]
    clock.advance(3600)  # the access token (1 h) is due: refreshed and rolled
    assert signed_in(phone)
    later = next(s for s in listing(laptop) if not s["current"])
    assert later["lastSeen"] == "2027-01-15T09:10:00Z" and later["created"] == first["created"]


def test_signout_everywhere_revokes_every_sessions_refresh_token(make_harness: Callable[..., Harness],
                                                                store: SessionStore, fake: FakeLogto) -> None:
    harness = make_harness(store=store)
    laptop = browser(harness, FIREFOX_LINUX)
    phone = browser(harness, SAFARI_IPHONE)
    tokens = [refresh_token_of(harness, client) for client in (laptop, phone)]
    out = laptop.post("/api/auth/signout", data={"everywhere": "1"}, headers=SAME_ORIGIN)
    assert out.status_code == 302
    assert not signed_in(phone)
    assert [refresh_grant(fake, token).json().get("error") for token in tokens] == ["invalid_grant"] * 2


def test_the_provider_down_does_not_keep_a_device_signed_in(make_harness: Callable[..., Harness],
                                                            store: SessionStore, fake: FakeLogto,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    harness = make_harness(store=store)
    laptop = browser(harness, FIREFOX_LINUX)
    phone = browser(harness, SAFARI_IPHONE)
    token = refresh_token_of(harness, phone)
    fake.outage.add("revocation")
    with caplog.at_level(logging.INFO, logger="logto_middleware"):
        ended = laptop.post(END, json={"others": True}, headers=SAME_ORIGIN)
    assert ended.status_code == 200 and ended.json() == {"ended": 1, "revoked": 0}
    assert not signed_in(phone)
    failures = [r for r in caplog.records if "revocation failed" in r.getMessage()]
    assert failures and failures[0].levelno == logging.ERROR
    assert all(token not in r.getMessage() and token not in (r.exc_text or "") for r in caplog.records)
    fake.outage.clear()
    assert refresh_grant(fake, token).status_code == 200  # not revoked: the residual risk, reported


def test_requests_that_cannot_be_honoured(make_harness: Callable[..., Harness], store: SessionStore) -> None:
    harness = make_harness(store=store)
    anonymous = harness.browser()
    assert anonymous.get(LIST).status_code == 401
    assert anonymous.get(LIST).json() == {"error": "Unauthorized"}
    assert anonymous.post(END, json={"others": True}, headers=SAME_ORIGIN).status_code == 401
    laptop = browser(harness, FIREFOX_LINUX)
    phone = browser(harness, SAFARI_IPHONE)
    # Cross-site: refused before anything is read.
    assert laptop.post(END, json={"others": True}, headers={"origin": "https://evil.example"}).status_code == 403
    assert laptop.post(END, json={"others": True}).status_code == 403  # no Origin, no token
    json_type = {**SAME_ORIGIN, "content-type": "application/json"}
    for body in (b"", b"not json", b"[]", b"null", b'{"session": 5}', b'{"session": ""}', b'{"others": "yes"}',
                 b'{"session": "x", "others": true}', b'{"others": false}', b"\xff\xfe{}", b"[" * 50_000,
                 json.dumps({"session": "x" * 129}).encode()):
        response = laptop.post(END, content=body, headers=json_type)
        assert response.status_code == 400, (body[:40], response.status_code, response.text)
        assert response.json()["error"] == "InvalidRequest"
    assert laptop.post(END, data={"others": "0"}, headers=SAME_ORIGIN).status_code == 400
    assert laptop.post(END, json={"session": "0" * 64}, headers=SAME_ORIGIN).status_code == 404
    assert laptop.get(END).status_code == 405
    assert laptop.delete(LIST).status_code == 405
    assert signed_in(laptop) and signed_in(phone)


def test_the_csrf_token_stands_in_for_the_origin(make_harness: Callable[..., Harness], store: SessionStore) -> None:
    harness = make_harness(store=store)
    laptop = browser(harness, FIREFOX_LINUX)
    phone = browser(harness, SAFARI_IPHONE)
    token = laptop.get("/api/auth/csrf").json()["csrfToken"]
    assert laptop.post(END, json={"others": True}, headers={"x-csrf-token": "0" * 64}).status_code == 403
    ended = laptop.post(END, json={"others": True}, headers={"x-csrf-token": token})
    assert ended.status_code == 200 and not signed_in(phone)


def test_cookie_sessions_list_only_themselves(make_harness: Callable[..., Harness], fake: FakeLogto) -> None:
    harness = make_harness()
    laptop = browser(harness, FIREFOX_LINUX)
    response = laptop.get(LIST)
    assert response.status_code == 200
    assert response.json()["serverSide"] is False
    [session] = response.json()["sessions"]
    assert (session["id"], session["description"], session["current"]) == ("current", "Firefox on Linux", True)
    # Described from this request's browser: the cookie (sent on every request) carries no device.
    data = SyncDriver(httpx.Client()).run(harness.middleware.core.manager.sessions.load(
        laptop.cookies["logto.session-token"], "logto.session-token"))
    assert data is not None and "device" not in data.extra and session["created"] is None
    others = laptop.post(END, json={"others": True}, headers=SAME_ORIGIN)
    assert others.status_code == 409 and others.json()["error"] == "ServerSideStoreRequired"
    assert "AUTH_SESSION_STORE" in others.json()["error_description"]
    assert laptop.post(END, json={"session": "0" * 64}, headers=SAME_ORIGIN).status_code == 404
    token = refresh_token_of(harness, laptop)
    ended = laptop.post(END, json={"session": "current"}, headers=SAME_ORIGIN)
    assert ended.status_code == 200 and ended.json() == {"ended": 1, "revoked": 1}
    assert any("Max-Age=0" in cookie for cookie in ended.headers.get_list("set-cookie"))
    assert not signed_in(laptop)
    assert refresh_grant(fake, token).json()["error"] == "invalid_grant"


def test_a_store_without_members_lists_only_the_current_session(make_harness: Callable[..., Harness],
                                                                clock: Clock) -> None:
    harness = make_harness(store=NoMembers(MemoryStore(clock=clock)))
    laptop = browser(harness, FIREFOX_LINUX)
    phone = browser(harness, SAFARI_IPHONE)
    response = laptop.get(LIST)
    assert response.status_code == 200 and len(response.json()["sessions"]) == 1
    assert laptop.post(END, json={"others": True}, headers=SAME_ORIGIN).status_code == 409
    out = laptop.post("/api/auth/signout", data={"everywhere": "1"}, headers=SAME_ORIGIN)
    assert out.status_code == 302 and not signed_in(phone)


def test_devices_under_a_custom_base_path(make_harness: Callable[..., Harness], store: SessionStore) -> None:
    harness = make_harness(store=store, base_path="/auth")
    client = harness.browser()
    client.headers["user-agent"] = FIREFOX_LINUX
    harness.client = client
    start = client.get("/auth/signin")
    assert start.status_code == 302
    assert client.get(harness.fake.authorize(start.headers["location"], login="alice")).status_code == 302
    assert client.get("/auth/sessions").json()["sessions"][0]["current"] is True
    assert "sessions" not in client.get(LIST).json()  # the app's page: not a route there



def test_an_authjs_session_lists_this_browser_and_keeps_auth_js_token_fields(
        make_harness: Callable[..., Harness]) -> None:
    from logto_middleware._sessions.authjs import AuthJsCookieStore

    harness = make_harness(session_format="authjs")
    laptop = browser(harness, FIREFOX_LINUX)
    token = AuthJsCookieStore(harness.config.secrets).decode(laptop.cookies["authjs.session-token"],
                                                            "authjs.session-token")
    assert token is not None and "device" not in token and "extra" not in token  # Auth.js's token, unchanged
    [session] = listing(laptop)
    assert (session["id"], session["description"], session["current"]) == ("current", "Firefox on Linux", True)
    # Read back from its cookie (another process, a restart): this browser's, from its User-Agent.
    other = make_harness(session_format="authjs")
    [session] = listing(_with_cookies(other, laptop))
    assert (session["description"], session["current"], session["created"]) == ("Firefox on Linux", True, None)


def _with_cookies(harness: Harness, source: httpx.Client) -> httpx.Client:
    client = harness.browser()
    client.headers["user-agent"] = source.headers["user-agent"]
    for name, value in source.cookies.items():
        client.cookies.set(name, value)
    return client
