"""Cookie tossing: a sibling host (`evil.example.com` beside `app.example.com`) can set cookies
for the parent domain, and a longer `Path` makes the browser send its cookie before ours.

On https every cookie of ours is `__Host-` (a browser refuses one that comes with a `Domain`,
so no sibling can plant it); a request that carries a cookie of one of our names twice trusts
neither; the session cookie of earlier versions (`__Secure-`) is still read, so an upgrade signs
no one out, but only a value sealed for that name, so a value of ours cannot be planted under it.
In Auth.js mode the session cookie keeps Auth.js's name, which the Auth.js app shares.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from conftest import Clock, Harness

from logto_middleware._sessions.cipher import Cipher
from logto_middleware.flow import run_without_io
from logto_middleware.session import SessionData
from logto_middleware.stores import MemoryStore, ServerSessions
from logto_middleware.testing import make_session_cookie

from .security_support import (
    HTTPS_ORIGIN,
    SESSION,
    TRANSACTION,
    SecretWatch,
    assert_error_redirect,
    cookie_base,
    deleted_names,
    error_location,
    jar,
    new_client,
    parse_set_cookie,
    session_written,
)
from .test_cookies import Browser

LEGACY_SESSION = f"__Secure-{SESSION}"
HOST_SESSION = f"__Host-{SESSION}"
CALLBACK = "/api/auth/callback/logto"


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
                       if cookie_base(parse_set_cookie(h)[0]).startswith(TRANSACTION)]
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
    return sorted(((n, v) for n, v in tab.cookies.items() if SESSION in n), key=lambda p: (len(p[0]), p[0]))


# -- names ----------------------------------------------------------------------------------------

def test_every_cookie_of_ours_is_host_prefixed_on_https(https_site: Harness, watch: SecretWatch) -> None:
    https_site.fake.users["big"] = {"custom": "x" * 6000}
    tab = browser(https_site, watch)
    tab.request("GET", "/api/auth/csrf")
    tab.sign_in("alice")
    tab.sign_in("big")  # a chunked session
    names = {parse_set_cookie(h)[0] for h in tab.seen}
    assert {HOST_SESSION, f"{HOST_SESSION}.0", f"{HOST_SESSION}.1", "__Host-logto.csrf-token"} <= names, names
    assert any(n.startswith("__Host-logto.transaction.") for n in names), names
    assert all(n.startswith("__Host-") for n in names), names


def test_make_session_cookie_names_the_https_cookie_as_the_middleware_does(https_site: Harness) -> None:
    header = make_session_cookie(https_site.config, {"sub": "u1"}, secure=True, clock=https_site.clock)
    assert header.startswith(f"{HOST_SESSION}=")
    response = https_site.client.get("/", headers={"cookie": header})
    assert signed_in_as(https_site, response) == "u1"
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


def test_planted_chunk_beside_a_chunked_session_is_anonymous_and_keeps_the_session(
        https_site: Harness, watch: SecretWatch) -> None:
    https_site.fake.users["big"] = {"custom": "x" * 6000}
    victim = browser(https_site, watch)
    victim.sign_in("big")
    pairs = session_of(victim)
    assert len(pairs) >= 2
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
    assert HOST_SESSION in deleted_names(response)


# -- the CSRF cookie ------------------------------------------------------------------------------

def test_two_csrf_cookies_trust_neither(https_site: Harness, watch: SecretWatch) -> None:
    # Logout CSRF: a cross-site form posting the attacker's token, with the attacker's CSRF
    # cookie planted before the victim's.
    attacker, victim = browser(https_site, watch), browser(https_site, watch)
    token = attacker.request("GET", "/api/auth/csrf").json()["csrfToken"]
    [(name, value)] = [(n, v) for n, v in attacker.cookies.items() if "csrf" in n]
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


def _legacy_cookie_session(site: Harness, sub: str) -> str:
    now = int(site.clock())
    data = SessionData(claims={"sub": sub}, expires_at=now + 3600, updated_at=now)
    return Cipher(site.config.secrets, "session cookie").encrypt(data.to_json(), EARLIER_AAD)


def test_session_of_an_earlier_version_is_kept_and_moved_to_the_new_name(https_site: Harness) -> None:
    legacy = _legacy_cookie_session(https_site, "u-old")
    response = me(https_site, (LEGACY_SESSION, legacy))
    assert signed_in_as(https_site, response) == "u-old"  # not signed out by the upgrade
    written = {parse_set_cookie(h)[0]: parse_set_cookie(h)[1] for h in session_written(response)}
    assert list(written) == [HOST_SESSION]
    assert LEGACY_SESSION in deleted_names(response)
    moved = me(https_site, (HOST_SESSION, written[HOST_SESSION]))
    assert signed_in_as(https_site, moved) == "u-old" and moved.headers.get_list("set-cookie") == []


def test_new_name_wins_over_an_earlier_versions_cookie(https_site: Harness, watch: SecretWatch) -> None:
    victim = browser(https_site, watch)
    victim.sign_in("alice")
    [ours] = session_of(victim)
    planted = (LEGACY_SESSION, _legacy_cookie_session(https_site, "mallory"))
    response = me(https_site, planted, ours)
    assert signed_in_as(https_site, response) == https_site.fake.user_claims("alice")["sub"]


def test_session_of_ours_planted_under_the_earlier_name_is_refused(https_site: Harness, watch: SecretWatch) -> None:
    # The attacker's own current session, planted under the name a sibling host can set, at a
    # browser that has none: not read (it is sealed for the `__Host-` name only).
    attacker = browser(https_site, watch)
    attacker.sign_in("mallory")
    [(name, value)] = session_of(attacker)
    response = me(https_site, (name.replace("__Host-", "__Secure-"), value))
    assert signed_in_as(https_site, response) is None
    assert session_written(response) == []


def _legacy_server_session(site: Harness, sessions: ServerSessions, sub: str) -> str:
    """A stored session, and its id encrypted as the versions before `__Host-` did."""
    now = int(site.clock())
    data = SessionData(claims={"sub": sub}, expires_at=now + 3600, updated_at=now)
    sid = sessions.session_id(run_without_io(sessions.save(data, None)))
    assert sid is not None
    return Cipher(site.config.secrets, "session id").encrypt(sid.encode(), EARLIER_ID_AAD)


def test_server_side_session_of_an_earlier_version_is_kept_and_moved(make_harness: Callable[..., Harness],
                                                                     watch: SecretWatch, clock: Clock) -> None:
    store = MemoryStore()
    site = watch.attach(make_harness(base_url=HTTPS_ORIGIN, store=store))
    sessions = ServerSessions(store, site.config.secrets, clock=clock)
    legacy = _legacy_server_session(site, sessions, "u-old")
    response = me(site, (LEGACY_SESSION, legacy))
    assert signed_in_as(site, response) == "u-old"
    written = {parse_set_cookie(h)[0]: parse_set_cookie(h)[1] for h in session_written(response)}
    assert list(written) == [HOST_SESSION] and LEGACY_SESSION in deleted_names(response)
    assert signed_in_as(site, me(site, (HOST_SESSION, written[HOST_SESSION]))) == "u-old"
    # Moved to a new id, the old one ended: the old value works nowhere any more.
    assert sessions.session_id(written[HOST_SESSION]) != sessions.session_id(legacy)
    assert signed_in_as(site, me(site, (LEGACY_SESSION, legacy))) is None
    # And the new value is not accepted back under the name a sibling host can set.
    assert signed_in_as(site, me(site, (LEGACY_SESSION, written[HOST_SESSION]))) is None


@pytest.mark.parametrize("server_side", [False, True], ids=["cookie", "server"])
def test_session_minted_over_http_is_refused_under_the_earlier_https_name(
        make_harness: Callable[..., Harness], watch: SecretWatch, server_side: bool) -> None:
    # An app also reachable over plain http (or another deployment with the same secret) mints
    # unprefixed cookies: planted under the earlier `__Secure-` name by a sibling host, such a
    # value must not sign a browser of the https app in.
    store = MemoryStore() if server_side else None
    plain = watch.attach(make_harness(store=store))
    assert plain.sign_in("mallory").status_code == 302
    value = jar(plain.client)[SESSION]
    secure = watch.attach(make_harness(base_url=HTTPS_ORIGIN, store=store))
    assert signed_in_as(secure, me(secure, (LEGACY_SESSION, value))) is None
    assert signed_in_as(secure, me(secure, (HOST_SESSION, value))) is not None  # control: the value is good


@pytest.mark.parametrize("server_side", [False, True], ids=["cookie", "server"])
def test_http_session_of_an_earlier_version_is_kept(make_harness: Callable[..., Harness], watch: SecretWatch,
                                                    server_side: bool) -> None:
    store = MemoryStore() if server_side else None
    site = watch.attach(make_harness(store=store))
    if store is not None:
        legacy = _legacy_server_session(site, ServerSessions(store, site.config.secrets, clock=site.clock), "u-old")
    else:
        legacy = _legacy_cookie_session(site, "u-old")
    assert signed_in_as(site, me(site, (SESSION, legacy))) == "u-old"


# -- Auth.js mode ---------------------------------------------------------------------------------

def test_authjs_mode_keeps_authjs_names(make_harness: Callable[..., Harness], watch: SecretWatch) -> None:
    site = watch.attach(make_harness(base_url=HTTPS_ORIGIN, session_format="authjs"))
    attacker, victim = browser(site, watch), browser(site, watch)
    victim.request("GET", "/api/auth/csrf")
    victim.sign_in("alice")
    names = {parse_set_cookie(h)[0] for h in victim.seen}
    # The Auth.js app that shares the session reads and writes these names.
    assert {"__Secure-authjs.session-token", "__Host-authjs.csrf-token"} <= names, names
    assert not any(n.startswith(("__Host-authjs.session-token", HOST_SESSION, LEGACY_SESSION)) for n in names)
    # Our own transaction cookie is ours to name: `__Host-`.
    assert any(n.startswith("__Host-logto.transaction.") for n in names), names
    attacker.sign_in("mallory")
    theirs = ("__Secure-authjs.session-token", attacker.cookies["__Secure-authjs.session-token"])
    ours = ("__Secure-authjs.session-token", victim.cookies["__Secure-authjs.session-token"])
    assert signed_in_as(site, me(site, theirs, ours)) is None  # two: neither
    assert signed_in_as(site, me(site, ours)) == site.fake.user_claims("alice")["sub"]
