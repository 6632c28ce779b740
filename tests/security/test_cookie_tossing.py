"""Cookie tossing: a sibling host (`evil.example.com` beside `app.example.com`) can set cookies
for the parent domain, and a longer `Path` makes the browser send its cookie before ours.

On https every cookie of ours is `__Host-` (a browser refuses one that comes with a `Domain`,
so no sibling can plant it); a request that carries a cookie of one of our names twice trusts
neither; the session cookie of earlier versions (`__Secure-`) is still read, so an upgrade signs
no one out, but only a value sealed for that name, so a value of ours cannot be planted under it.
In Auth.js mode the session cookie keeps Auth.js's name, which the Auth.js app shares: the
duplicate refusal and the `__Host-` transaction and CSRF cookies hold there too, the migration
from an earlier name does not exist. Every test runs in every session mode (tests/security/
conftest.py) but where a `modes(...)` marker says why not.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from conftest import Harness

from logto_middleware._sessions.cipher import Cipher
from logto_middleware.flow import SyncDriver
from logto_middleware.session import SessionData
from logto_middleware.stores import ServerSessions
from logto_middleware.testing import make_session_cookie

from .security_support import (
    HTTPS_ORIGIN,
    SecretWatch,
    assert_error_redirect,
    csrf_cookie,
    deleted_names,
    error_location,
    is_session_cookie,
    is_transaction,
    jar,
    new_client,
    parse_set_cookie,
    server_side,
    session_written,
)
from .test_cookies import Browser

CALLBACK = "/api/auth/callback/logto"
# The migration from the earlier `__Secure-` session cookie exists where the name changed: not in
# Auth.js mode, whose cookie always had (and keeps) Auth.js's `__Secure-` name.
MIGRATED = pytest.mark.modes("logto", "memory", "redis",
                             reason="Auth.js's session cookie name never changed: there is no earlier name to read")
CHUNKED_ONLY = pytest.mark.modes("logto", "authjs", reason="a server-side session's cookie is an id, never chunked")


@pytest.fixture
def https_site(make_harness: Callable[..., Harness], watch: SecretWatch) -> Harness:
    """The app behind a TLS-terminating proxy (`base_url` https): its cookies are the https ones."""
    return watch.attach(make_harness(base_url=HTTPS_ORIGIN))


def browser(site: Harness, watch: SecretWatch) -> Browser:
    """A browser with a cookie jar of its own (it sends the `Secure` cookies, as a browser talking
    https to the proxy does)."""
    return Browser(site, watch.watch_client(new_client(site)))


def start(site: Harness, tab: Browser, login: str) -> tuple[str, str, str]:
    """Start a sign-in in `tab` and authorize `login` at the fake: (callback path, the name and
    the value of the transaction cookie it got)."""
    response = tab.request("GET", "/api/auth/signin")
    [(name, value)] = [parse_set_cookie(h)[:2] for h in response.headers.get_list("set-cookie")
                       if is_transaction(parse_set_cookie(h)[0])]
    callback = httpx.URL(site.fake.authorize(response.headers["location"], login=login))
    return callback.raw_path.decode(), name, value


def cookie(*pairs: tuple[str, str]) -> dict[str, str]:
    return {"cookie": "; ".join(f"{n}={v}" for n, v in pairs)}


def me(site: Harness, *pairs: tuple[str, str]) -> httpx.Response:
    response = site.client.get("/", headers=cookie(*pairs))
    assert response.status_code == 200, response.text
    return response


def signed_in_as(site: Harness, response: httpx.Response) -> str | None:
    body = response.json()
    return body["id"] if body["authenticated"] else None


def session_of(tab: Browser) -> list[tuple[str, str]]:
    return sorted(((n, v) for n, v in tab.cookies.items() if is_session_cookie(n)), key=lambda p: (len(p[0]), p[0]))


def https_session(site: Harness) -> str:
    """The https session cookie's name: `__Host-`, but for Auth.js's, which keeps Auth.js's name
    (the Auth.js app sharing it reads and writes that one)."""
    return ("__Secure-" if site.config.session_format == "authjs" else "__Host-") + site.session_cookie


def earlier_session(site: Harness) -> str:
    """The https session cookie's name in the versions before `__Host-` (not in Auth.js mode)."""
    assert site.config.session_format != "authjs"
    return "__Secure-" + site.session_cookie


# -- names ----------------------------------------------------------------------------------------

def test_every_cookie_of_ours_is_host_prefixed_on_https(https_site: Harness, watch: SecretWatch) -> None:
    https_site.fake.users["big"] = {"custom": "x" * 6000}
    tab = browser(https_site, watch)
    tab.request("GET", "/api/auth/csrf")
    tab.sign_in("alice")
    tab.sign_in("big")  # a chunked session (but for a server-side one: its cookie is an id)
    names = {parse_set_cookie(h)[0] for h in tab.seen}
    session = https_session(https_site)
    chunks = set() if server_side(https_site) else {f"{session}.0", f"{session}.1"}
    assert {session, *chunks, f"__Host-{csrf_cookie(https_site)}"} <= names, names
    assert any(n.startswith("__Host-logto.transaction.") for n in names), names
    # One name for the session cookie (and its chunks): no other prefix, no other format's.
    sessions = {n for n in names if is_session_cookie(n)}
    assert all(n == session or (chunks and re.fullmatch(rf"{re.escape(session)}\.[0-9]+", n)) for n in sessions), names
    # Every cookie is `__Host-`, but Auth.js's session cookie (Auth.js's name, see above).
    assert all(n.startswith("__Host-") for n in names - sessions), names
    assert session.startswith("__Host-") or https_site.config.session_format == "authjs"


@pytest.mark.modes("logto", "authjs", reason="make_session_cookie writes a cookie session; a server-side store's "
                                             "session lives in the store, which the helper does not get")
def test_make_session_cookie_names_the_https_cookie_as_the_middleware_does(
        make_harness: Callable[..., Harness], watch: SecretWatch) -> None:
    # (In Auth.js mode it once sealed a Logto cookie under Logto's name: the app's test ran anonymous.)
    for secure in (True, False):
        site = watch.attach(make_harness(base_url=HTTPS_ORIGIN) if secure else make_harness())
        header = make_session_cookie(site.config, {"sub": "u1"}, access_token="at-1", secure=secure, clock=site.clock)
        assert header.startswith(f"{https_session(site) if secure else site.session_cookie}="), header[:40]
        response = site.client.get("/", headers={"cookie": header})
        assert signed_in_as(site, response) == "u1" and response.json()["access_token"] == "at-1"
        assert session_written(response) == []  # already under the name the middleware writes


# -- the transaction cookie (login CSRF) ----------------------------------------------------------

def test_attackers_transaction_planted_under_a_name_a_sibling_can_set_is_ignored(
        https_site: Harness, watch: SecretWatch) -> None:
    # A sibling host can set `__Secure-` (with `Domain=` the parent) but not `__Host-`.
    attacker, victim = browser(https_site, watch), browser(https_site, watch)
    attacker_callback, name, value = start(https_site, attacker, "mallory")
    start(https_site, victim, "alice")  # the victim has a sign-in of its own under way
    planted = (name.replace("__Host-", "__Secure-"), value)
    response = https_site.client.get(attacker_callback, headers=cookie(planted, *victim.cookies.items()))
    assert_error_redirect(response, "MissingCSRF", HTTPS_ORIGIN)
    assert https_site.fake.counts["token:authorization_code"] == 0


def test_two_transaction_cookies_of_one_name_refuse_the_sign_in(https_site: Harness, watch: SecretWatch) -> None:
    # Should the attacker's cookie reach the victim's browser under the name the callback reads
    # (an older browser, plain http), beside one of the victim's: sent first (a longer path),
    # it must not be picked.
    attacker, victim = browser(https_site, watch), browser(https_site, watch)
    attacker_callback, name, value = start(https_site, attacker, "mallory")
    _, victim_name, victim_value = start(https_site, victim, "alice")
    header = cookie((name, value), (victim_name, victim_value), (name, victim_value))
    response = https_site.client.get(attacker_callback, headers=header)
    assert_error_redirect(response, "MissingCSRF", HTTPS_ORIGIN)
    assert name in deleted_names(response)  # our own is cleared (a deletion cannot reach a planted one)
    assert victim_name not in deleted_names(response)  # the victim's own sign-in goes on
    assert https_site.fake.counts["token:authorization_code"] == 0
    page = https_site.client.get(error_location("MissingCSRF", ""))
    assert page.status_code == 400 and b"<code>MissingCSRF</code>" in page.content


# -- the session cookie ---------------------------------------------------------------------------

def test_two_session_cookies_sign_in_neither_and_lose_neither(https_site: Harness, watch: SecretWatch) -> None:
    attacker, victim = browser(https_site, watch), browser(https_site, watch)
    attacker.sign_in("mallory")
    victim.sign_in("alice")
    [theirs], [ours] = session_of(attacker), session_of(victim)
    alice = https_site.fake.user_claims("alice")["sub"]
    assert signed_in_as(https_site, me(https_site, ours)) == alice  # control
    for pairs in ((theirs, ours), (ours, theirs)):
        response = me(https_site, *pairs)
        assert signed_in_as(https_site, response) is None
        # Nothing deleted: a deletion would reach only the victim's own cookie, not the planted one.
        assert response.headers.get_list("set-cookie") == []
        session = https_site.client.get("/api/auth/session", headers=cookie(*pairs))
        assert session.json() is None and session.headers.get_list("set-cookie") == []
    assert signed_in_as(https_site, me(https_site, ours)) == alice  # the victim's session was not lost


@CHUNKED_ONLY
def test_planted_chunk_beside_a_chunked_session_is_anonymous_and_keeps_the_session(
        https_site: Harness, watch: SecretWatch) -> None:
    https_site.fake.users["big"] = {"custom": "x" * 6000}
    victim = browser(https_site, watch)
    victim.sign_in("big")
    pairs = session_of(victim)
    assert len(pairs) >= 2 and pairs[0][0] == f"{https_session(https_site)}.0", pairs
    planted = (pairs[0][0], "A" * 200)
    response = me(https_site, planted, *pairs)
    assert signed_in_as(https_site, response) is None
    assert response.headers.get_list("set-cookie") == []
    assert signed_in_as(https_site, me(https_site, *pairs)) == https_site.fake.user_claims("big")["sub"]


def test_sign_out_with_two_session_cookies_clears_ours(https_site: Harness, watch: SecretWatch) -> None:
    attacker, victim = browser(https_site, watch), browser(https_site, watch)
    attacker.sign_in("mallory")
    victim.sign_in("alice")
    [theirs], [ours] = session_of(attacker), session_of(victim)
    response = https_site.client.post("/api/auth/signout", headers={**cookie(theirs, ours), "origin": HTTPS_ORIGIN})
    assert response.status_code == 302
    assert https_session(https_site) in deleted_names(response)


# -- the CSRF cookie ------------------------------------------------------------------------------

def test_two_csrf_cookies_trust_neither(https_site: Harness, watch: SecretWatch) -> None:
    # Logout CSRF: a cross-site form posting the attacker's token, with the attacker's CSRF
    # cookie planted before the victim's.
    attacker, victim = browser(https_site, watch), browser(https_site, watch)
    token = attacker.request("GET", "/api/auth/csrf").json()["csrfToken"]
    [(name, value)] = [(n, v) for n, v in attacker.cookies.items() if n == f"__Host-{csrf_cookie(https_site)}"]
    victim.sign_in("alice")
    victim.request("GET", "/api/auth/csrf")
    form = {"content-type": "application/x-www-form-urlencoded"}
    both = cookie((name, value), *victim.cookies.items())
    response = https_site.client.post("/api/auth/signout", content=f"csrfToken={token}", headers={**both, **form})
    assert response.status_code == 403
    assert response.json() == {"error": "MissingCSRF"}
    alone = cookie((name, value))  # control: the same token with one cookie is accepted
    assert https_site.client.post("/api/auth/signout", content=f"csrfToken={token}",
                                  headers={**alone, **form}).status_code == 302


# -- the session cookie of earlier versions ---------------------------------------------------------

EARLIER_AAD = b"logto.session-token"  # what the versions before `__Host-` sealed session cookies with
EARLIER_ID_AAD = b"logto.session-id"


def _legacy_session(site: Harness, sub: str) -> str:
    """A session of `sub` as the versions before `__Host-` wrote it: the sealed session, or (with
    a server-side store) a stored session and its id encrypted with the earlier binding."""
    now = int(site.clock())
    data = SessionData(claims={"sub": sub}, expires_at=now + 3600, updated_at=now)
    if not server_side(site):
        return Cipher(site.config.secrets, "session cookie").encrypt(data.to_json(), EARLIER_AAD)
    sessions = _server_sessions(site)
    with httpx.Client() as unused:  # (the store's I/O is not http)
        sid = sessions.session_id(SyncDriver(unused).run(sessions.save(data, None)))
    assert sid is not None
    return Cipher(site.config.secrets, "session id").encrypt(sid.encode(), EARLIER_ID_AAD)


def _server_sessions(site: Harness) -> ServerSessions:
    """The site's server-side sessions (on the mode's store, shared by every harness of the test)."""
    sessions = site.middleware.core.manager.sessions
    assert isinstance(sessions, ServerSessions)
    return sessions


@MIGRATED
def test_session_of_an_earlier_version_is_kept_and_moved_to_the_new_name(https_site: Harness) -> None:
    legacy, new = earlier_session(https_site), https_session(https_site)
    response = me(https_site, (legacy, _legacy_session(https_site, "u-old")))
    assert signed_in_as(https_site, response) == "u-old"  # not signed out by the upgrade
    written = {parse_set_cookie(h)[0]: parse_set_cookie(h)[1] for h in session_written(response)}
    assert list(written) == [new]
    assert legacy in deleted_names(response)
    moved = me(https_site, (new, written[new]))
    assert signed_in_as(https_site, moved) == "u-old" and moved.headers.get_list("set-cookie") == []


@MIGRATED
def test_new_name_wins_over_an_earlier_versions_cookie(https_site: Harness, watch: SecretWatch) -> None:
    victim = browser(https_site, watch)
    victim.sign_in("alice")
    [ours] = session_of(victim)
    planted = (earlier_session(https_site), _legacy_session(https_site, "mallory"))
    assert signed_in_as(https_site, me(https_site, planted)) == "mallory"  # control: the planted one alone is read
    response = me(https_site, planted, ours)
    assert signed_in_as(https_site, response) == https_site.fake.user_claims("alice")["sub"]


@MIGRATED
def test_session_of_ours_planted_under_the_earlier_name_is_refused(https_site: Harness, watch: SecretWatch) -> None:
    # The attacker's own current session, planted under the name a sibling host can set, at a
    # browser that has none: not read (it is sealed for the `__Host-` name only).
    attacker = browser(https_site, watch)
    attacker.sign_in("mallory")
    [(name, value)] = session_of(attacker)
    assert name == https_session(https_site)
    assert signed_in_as(https_site, me(https_site, (name, value))) is not None  # control: the value is good
    response = me(https_site, (earlier_session(https_site), value))
    assert signed_in_as(https_site, response) is None
    assert session_written(response) == []


@pytest.mark.modes("memory", "redis", reason="a session id (its stored session moved to a new id) exists only "
                                             "with a server-side store")
def test_server_side_session_of_an_earlier_version_is_kept_and_moved(https_site: Harness) -> None:
    sessions, legacy, new = _server_sessions(https_site), earlier_session(https_site), https_session(https_site)
    value = _legacy_session(https_site, "u-old")
    response = me(https_site, (legacy, value))
    assert signed_in_as(https_site, response) == "u-old"
    written = {parse_set_cookie(h)[0]: parse_set_cookie(h)[1] for h in session_written(response)}
    assert list(written) == [new] and legacy in deleted_names(response)
    assert signed_in_as(https_site, me(https_site, (new, written[new]))) == "u-old"
    # Moved to a new id, the old one ended: the old value works nowhere any more.
    assert sessions.session_id(written[new]) != sessions.session_id(value)
    assert signed_in_as(https_site, me(https_site, (legacy, value))) is None
    # And the new value is not accepted back under the name a sibling host can set.
    assert signed_in_as(https_site, me(https_site, (legacy, written[new]))) is None


def test_session_minted_over_http_is_refused_under_the_https_name_a_sibling_can_set(
        make_harness: Callable[..., Harness], watch: SecretWatch) -> None:
    # An app also reachable over plain http (or another deployment with the same secret, the
    # same store) mints unprefixed cookies: planted under the https name a sibling host can set
    # (the earlier `__Secure-` one; in Auth.js mode Auth.js's own, whose key is derived from the
    # cookie name), such a value must not sign a browser of the https app in.
    plain = watch.attach(make_harness())
    assert plain.sign_in("mallory").status_code == 302
    value = jar(plain.client)[plain.session_cookie]
    assert signed_in_as(plain, me(plain, (plain.session_cookie, value))) is not None  # control: the value is good
    secure = watch.attach(make_harness(base_url=HTTPS_ORIGIN))
    assert signed_in_as(secure, me(secure, (f"__Secure-{secure.session_cookie}", value))) is None
    if secure.config.session_format != "authjs":
        # (the `__Host-` name, which no sibling can set, takes values sealed now, wherever minted)
        assert signed_in_as(secure, me(secure, (https_session(secure), value))) is not None


@MIGRATED
def test_http_session_of_an_earlier_version_is_kept(site: Harness) -> None:
    assert signed_in_as(site, me(site, (site.session_cookie, _legacy_session(site, "u-old")))) == "u-old"
