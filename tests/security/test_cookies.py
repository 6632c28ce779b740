"""Session cookies that are tampered, truncated, re-ordered, incomplete, foreign, stale or huge:
the request goes on anonymous, the bad cookies are cleared, never a 500. And the attributes of
every cookie the middleware sets, on http and on https."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import ORIGIN, Clock, Harness

from logto_middleware._sessions.cipher import Cipher
from logto_middleware.session import SessionData

from .security_support import (
    HTTPS_ORIGIN,
    TRANSACTION,
    SecretWatch,
    assert_signed_in,
    cookie_base,
    cookie_header,
    csrf_cookie,
    deleted_names,
    is_deletion,
    is_transaction,
    jar,
    new_client,
    parse_set_cookie,
    query_of,
    server_side,
    session_written,
    transaction_cookie,
)

OLD_SECRET = "old-secret-0123456789-abcdefghijklmnopq"
NEW_SECRET = "new-secret-0123456789-abcdefghijklmnopq"
FOREIGN_SECRET = "foreign-secret-0123456789-abcdefghijklm"
# Chunks exist only where the whole session is in the cookie.
CHUNKED_ONLY = pytest.mark.modes("logto", "authjs", reason="a server-side session's cookie is an id, never chunked")




def session_pairs(site: Harness, client: httpx.Client | None = None) -> list[tuple[str, str]]:
    cookies = jar(client or site.client)
    names = sorted((n for n in cookies if n.startswith(site.session_cookie)), key=lambda n: (len(n), n))
    return [(n, cookies[n]) for n in names]


def big_session(site: Harness, client: httpx.Client | None = None, login: str = "big") -> list[tuple[str, str]]:
    site.fake.users[login] = {"custom": "x" * 6000}
    browser = client or site.client
    start = browser.get("/api/auth/signin")
    assert session_written(browser.get(site.fake.authorize(start.headers["location"], login=login)))
    pairs = session_pairs(site, browser)
    assert len(pairs) >= 3 and all(name.startswith(f"{site.session_cookie}.") for name, _ in pairs), pairs
    return pairs


def small_session(site: Harness) -> list[tuple[str, str]]:
    assert_signed_in(site, site.sign_in("alice"))
    pairs = session_pairs(site)
    assert [name for name, _ in pairs] == [site.session_cookie]
    return pairs


def present(site: Harness, pairs: list[tuple[str, str]], path: str = "/") -> httpx.Response:
    response = site.client.get(path, headers=cookie_header(pairs))
    assert response.status_code == 200, response.text
    return response


def assert_anonymous_and_cleared(response: httpx.Response, names: list[str]) -> None:
    body = response.json()
    assert body is None or body.get("authenticated") is False, body  # `None` from /api/auth/session
    assert session_written(response) == []
    missing = set(names) - deleted_names(response)
    assert not missing, f"not cleared: {sorted(missing)}; Set-Cookie: {response.headers.get_list('set-cookie')}"


def flip(value: str, at: int) -> str:
    return value[:at] + ("A" if value[at] != "A" else "B") + value[at + 1:]


# -- chunked sessions ---------------------------------------------------------------------------

def _tampered(pairs: list[tuple[str, str]], other: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(n, flip(v, len(v) // 2) if i == 1 else v) for i, (n, v) in enumerate(pairs)]


def _truncated(pairs: list[tuple[str, str]], other: list[tuple[str, str]]) -> list[tuple[str, str]]:
    name, value = pairs[-1]
    return [*pairs[:-1], (name, value[: len(value) // 2])]


def _reordered(pairs: list[tuple[str, str]], other: list[tuple[str, str]]) -> list[tuple[str, str]]:
    (n0, v0), (n1, v1), *rest = pairs
    return [(n0, v1), (n1, v0), *rest]


def _missing(index: int) -> Callable[[list[tuple[str, str]], list[tuple[str, str]]], list[tuple[str, str]]]:
    def drop(pairs: list[tuple[str, str]], other: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [p for i, p in enumerate(pairs) if i != (index if index >= 0 else len(pairs) + index)]
    return drop


def _from_another_session(pairs: list[tuple[str, str]], other: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(n, other[i][1] if i == 1 else v) for i, (n, v) in enumerate(pairs)]


def _extra_chunk(pairs: list[tuple[str, str]], other: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [*pairs, (f"{pairs[0][0].rsplit('.', 1)[0]}.{len(pairs)}", "A" * 100)]


CHUNK_TRICKS = {
    "tampered_chunk": _tampered,
    "truncated_last_chunk": _truncated,
    "reordered_chunks": _reordered,
    "missing_first_chunk": _missing(0),
    "missing_middle_chunk": _missing(1),
    "missing_last_chunk": _missing(-1),
    "chunk_from_another_session": _from_another_session,
    "extra_chunk": _extra_chunk,
}


@CHUNKED_ONLY
@pytest.mark.parametrize("path", ["/", "/api/auth/session"])
@pytest.mark.parametrize("trick", sorted(CHUNK_TRICKS))
def test_broken_chunked_session_is_anonymous_and_cleared(site: Harness, watch: SecretWatch, trick: str,
                                                         path: str) -> None:
    other = big_session(site, watch.watch_client(new_client(site)), login="big2")
    pairs = big_session(site)
    assert present(site, pairs).json()["authenticated"] is True  # control: the genuine chunks work
    broken = CHUNK_TRICKS[trick](pairs, other)
    response = present(site, broken, path)
    assert_anonymous_and_cleared(response, [name for name, _ in broken])


@CHUNKED_ONLY
def test_unchunked_cookie_beside_chunks_is_not_mixed(site: Harness) -> None:
    pairs = big_session(site)
    response = present(site, [(site.session_cookie, "A" * 200), *pairs])
    assert_anonymous_and_cleared(response, [site.session_cookie, *(n for n, _ in pairs)])


# -- single-cookie sessions ---------------------------------------------------------------------

def _sealed(secrets: list[str], purpose: str, aad: bytes, data: SessionData) -> str:
    return Cipher(secrets, purpose).encrypt(data.to_json(), aad)


def _admin(now: float) -> SessionData:
    return SessionData(claims={"sub": "admin", "name": "Admin"}, expires_at=int(now) + 3600, updated_at=int(now))


SINGLE_TRICKS: dict[str, Callable[[Harness, str], str]] = {
    "tampered_start": lambda site, v: flip(v, 2),  # the key id
    "tampered_nonce": lambda site, v: flip(v, 8),
    "tampered_middle": lambda site, v: flip(v, len(v) // 2),
    "tampered_tag": lambda site, v: flip(v, len(v) - 2),
    "truncated": lambda site, v: v[: len(v) // 2],
    "truncated_to_header": lambda site, v: v[:30],
    "extended": lambda site, v: v + "AAAA",
    "empty": lambda site, v: "",
    "not_base64": lambda site, v: "!!!" + v[3:],
    "quoted": lambda site, v: f'"{flip(v, 40)}"',
    "plain_json": lambda site, v: json.dumps({"claims": {"sub": "admin"}, "expires_at": 9999999999,
                                              "updated_at": 0}).replace('"', "").replace(",", ""),
    "sealed_with_foreign_secret": lambda site, v: _sealed([FOREIGN_SECRET], "session cookie",
                                                          b"logto.session-token", _admin(site.clock())),
    "sealed_with_transaction_key": lambda site, v: _sealed(list(site.config.secrets), "transaction cookie",
                                                           b"logto.session-token", _admin(site.clock())),
    "sealed_for_another_cookie_name": lambda site, v: _sealed(list(site.config.secrets), "session cookie",
                                                              b"logto.transaction", _admin(site.clock())),
    "transaction_cookie_as_session": lambda site, v: _transaction_value(site),
}


def _transaction_value(site: Harness) -> str:
    client = new_client(site)
    client.get("/api/auth/signin")
    return transaction_cookie(client)[1]


@pytest.mark.parametrize("trick", sorted(SINGLE_TRICKS))
def test_broken_session_cookie_is_anonymous_and_cleared(site: Harness, watch: SecretWatch, trick: str) -> None:
    [(name, value)] = small_session(site)
    forged = SINGLE_TRICKS[trick](site, value)
    watch.add(forged)
    response = present(site, [(name, forged)])
    if trick == "empty":
        # An empty value is "no cookie": anonymous, and nothing to clear is fine too.
        assert response.json()["authenticated"] is False
        assert session_written(response) == []
        return
    assert_anonymous_and_cleared(response, [name])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hostile_jwe(header: bytes) -> str:
    """A JWE compact token of `header` (raw JSON) with well-sized random-looking parts."""
    return ".".join([_b64(header), "", _b64(b"i" * 16), _b64(b"c" * 48), _b64(b"t" * 32)])


# Protected headers that are JSON but not a JOSE header, or a JOSE header we must refuse: each
# was (or could be) an exception in the Auth.js codec instead of "no session".
HOSTILE_HEADERS = {
    "array": b"[]", "number": b"1", "string": b'"s"', "null": b"null", "array_of_alg_enc": b'["alg","enc"]',
    "string_with_alg_enc": b'"alg enc"', "alg_none": b'{"alg":"none","enc":"A256GCM"}',
    "dir_with_garbage": b'{"alg":"dir","enc":"A256CBC-HS512"}', "key_wrap": b'{"alg":"A256KW","enc":"A256GCM"}',
    "kid_not_a_string": b'{"alg":"dir","enc":"A256CBC-HS512","kid":[]}',
    "enc_not_a_string": b'{"alg":"dir","enc":["A256GCM"]}',
    "unknown_crit": b'{"alg":"dir","enc":"A256GCM","crit":["x"]}',
    "deeply_nested": b"[" * 760,
}


@pytest.mark.parametrize("header", sorted(HOSTILE_HEADERS))
def test_hostile_jwe_session_cookie_is_no_session_and_cleared(site: Harness, watch: SecretWatch, header: str) -> None:
    """Finding 3 of issue 21: in Auth.js mode a JWE whose header is JSON but not an object was an
    AttributeError: 500 on the session and sign-out routes, a traceback logged per request. In
    every mode: no session, the cookie cleared, nothing logged as a failure."""
    cookie = [(site.session_cookie, hostile_jwe(HOSTILE_HEADERS[header]))]
    assert_anonymous_and_cleared(present(site, cookie), [site.session_cookie])
    assert_anonymous_and_cleared(present(site, cookie, "/api/auth/session"), [site.session_cookie])
    signout = site.client.post("/api/auth/signout", headers={**cookie_header(cookie), "origin": ORIGIN})
    assert signout.status_code == 302, signout.text
    assert site.session_cookie in deleted_names(signout)
    bearer = site.client.get("/", headers={"authorization": f"Bearer {cookie[0][1]}"})
    assert bearer.json()["authenticated"] is False and bearer.headers.get_list("set-cookie") == []
    assert watch.errors_logged() == []


def test_expired_session_is_anonymous_and_cleared(site: Harness, clock: Clock) -> None:
    pairs = small_session(site)
    clock.advance(site.config.session_max_age + 1)
    assert_anonymous_and_cleared(present(site, pairs), [n for n, _ in pairs])
    assert site.fake.counts["token:refresh_token"] == 0  # an expired session is not revived by a refresh


def test_expired_short_session_is_anonymous_and_cleared(make_harness: Callable[..., Harness], watch: SecretWatch,
                                                        clock: Clock) -> None:
    site = watch.attach(make_harness(session_max_age=120, session_update_age=3600))
    pairs = small_session(site)
    clock.advance(119)
    assert present(site, pairs).json()["authenticated"] is True
    clock.advance(2)
    assert_anonymous_and_cleared(present(site, pairs), [n for n, _ in pairs])


def test_old_secret_accepted_while_listed_then_rejected(make_harness: Callable[..., Harness],
                                                        watch: SecretWatch) -> None:
    before = watch.attach(make_harness(secret=OLD_SECRET))
    pairs = small_session(before)
    rotated = watch.attach(make_harness(secret=[NEW_SECRET, OLD_SECRET]))
    assert present(rotated, pairs).json()["authenticated"] is True
    # A chunked cookie too (server-side sessions are never chunked: their cookie is an id).
    big = [] if server_side(before) else big_session(before, login="big-old")
    if big:
        assert present(rotated, big).json()["authenticated"] is True
    removed = watch.attach(make_harness(secret=[NEW_SECRET]))
    assert_anonymous_and_cleared(present(removed, pairs), [n for n, _ in pairs])
    if big:
        assert_anonymous_and_cleared(present(removed, big), [n for n, _ in big])


def test_new_secret_cookie_is_not_readable_by_old_deployment(make_harness: Callable[..., Harness],
                                                             watch: SecretWatch) -> None:
    rotated = watch.attach(make_harness(secret=[NEW_SECRET, OLD_SECRET]))
    pairs = small_session(rotated)
    old_only = watch.attach(make_harness(secret=OLD_SECRET))
    assert_anonymous_and_cleared(present(old_only, pairs), [n for n, _ in pairs])


def test_huge_session_cookie_is_anonymous_and_cleared(site: Harness) -> None:
    response = present(site, [(site.session_cookie, "A" * 100_000)])
    assert_anonymous_and_cleared(response, [site.session_cookie])


def test_huge_cookie_header_is_anonymous_not_a_500(site: Harness) -> None:
    junk = [(f"junk{i}", "x" * 1000) for i in range(100)]
    name = site.session_cookie
    response = present(site, [*junk, (f"{name}.0", "A" * 3000), (f"{name}.1", "B" * 3000)])
    assert response.json()["authenticated"] is False
    assert session_written(response) == []
    for path in ("/api/auth/session", "/api/auth/csrf", "/api/auth/providers"):
        assert site.client.get(path, headers=cookie_header(junk)).status_code == 200


@pytest.mark.parametrize("header", [
    "=", ";;;;", "logto.session-token", "logto.session-token=;", "logto.session-token.=x",
    "logto.session-token.1000=x", "logto.session-token.-1=x", "logto.session-token.0=x; logto.session-token.0=y",
    '"logto.session-token"="x"', "logto.session-token=%00%ff", "logto.session-token=a|b|c",
])
def test_malformed_cookie_headers_are_anonymous_not_a_500(site: Harness, header: str) -> None:
    for path in ("/", "/api/auth/session", "/api/auth/csrf"):
        response = site.client.get(path, headers={"cookie": header})
        assert response.status_code == 200
        assert session_written(response) == []


# -- attributes of every cookie the middleware sets ---------------------------------------------

class Browser:
    """A minimal browser: its own cookie jar (Secure cookies are sent when the browser talks
    https to a TLS-terminating proxy, which httpx's jar cannot model), and every Set-Cookie seen."""

    def __init__(self, site: Harness, client: httpx.Client, headers: dict[str, str] | None = None) -> None:
        self.site, self.client = site, client
        self.headers = headers or {}
        self.cookies: dict[str, str] = {}
        self.seen: list[str] = []

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {}),
                   "cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        response = self.client.request(method, url, headers=headers, **kwargs)
        self.client.cookies.clear()
        assert response.status_code < 500, response.text
        for header in response.headers.get_list("set-cookie"):
            self.seen.append(header)
            name, value, _ = parse_set_cookie(header)
            if is_deletion(header):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return response

    def sign_in(self, login: str) -> None:
        start = self.request("GET", "/api/auth/signin", params={"callbackUrl": "/x"})
        redirect_uri = query_of(start.headers["location"])["redirect_uri"]
        callback = self.site.fake.authorize(start.headers["location"], login=login)
        assert callback.startswith(redirect_uri)
        parts = httpx.URL(callback)
        response = self.request("GET", parts.raw_path.decode())
        assert response.status_code == 302 and "error" not in response.headers["location"], response.headers


def journey(site: Harness, browser: Browser) -> list[str]:
    """Every kind of Set-Cookie: CSRF, transaction, session, chunks, rolling, clearing, sign-out."""
    site.fake.users["big"] = {"custom": "x" * 6000}
    browser.request("GET", "/api/auth/csrf")
    browser.sign_in("alice")
    browser.request("GET", "/")
    site.clock.advance(2 * 24 * 3600)  # the session rolls
    browser.request("GET", "/")
    browser.request("GET", "/api/auth/signout")
    browser.sign_in("big")  # chunks, and the single cookie deleted
    browser.sign_in("alice")  # the chunks deleted
    name = next(n for n in browser.cookies if site.session_cookie in n)
    browser.cookies[name] = flip(browser.cookies[name], 50)
    browser.request("GET", "/")  # the tampered cookie cleared
    browser.sign_in("alice")
    token = browser.request("GET", "/api/auth/csrf").json()["csrfToken"]
    browser.request("POST", "/api/auth/signout", data={"csrfToken": token})
    return browser.seen


def assert_cookie_attributes(site: Harness, seen: list[str], secure: bool) -> None:
    csrf, session = csrf_cookie(site), site.session_cookie
    kinds = set()
    for header in seen:
        name, _, attrs = parse_set_cookie(header)
        assert attrs.get("path") == "/", header
        assert "httponly" in attrs, header
        assert attrs.get("samesite") == "Lax", header
        assert "domain" not in attrs, header
        base = cookie_base(name)
        if secure:
            assert "secure" in attrs, header
            assert name.startswith(("__Secure-", "__Host-")), header
            if site.config.session_format == "authjs" and base.startswith(session):
                assert name.startswith("__Secure-"), header  # Auth.js's own name, shared with the Auth.js app
            else:
                # `__Host-`: no sibling host can plant one (cookie tossing).
                assert name.startswith("__Host-"), header
        else:
            assert "secure" not in attrs and name == base, header
        kind = ".".join(base.split(".")[0:2])
        if is_transaction(name):
            assert len(base) == len(TRANSACTION) + 9, header  # one cookie per sign-in: its state's id
        chunk = "chunk " if base[-1].isdigit() and not is_transaction(name) else ""
        kinds.add(chunk + kind + (" deleted" if is_deletion(header) else ""))
    expected = {session, f"{session} deleted", TRANSACTION, f"{TRANSACTION} deleted", csrf}
    if not server_side(site):  # a session id is never chunked
        expected |= {f"chunk {session}", f"chunk {session} deleted"}
    assert expected <= kinds, sorted(kinds)


def test_cookie_attributes_on_http(site: Harness) -> None:
    assert_cookie_attributes(site, journey(site, Browser(site, site.client)), secure=False)


def test_cookie_attributes_on_https_client(site: Harness, watch: SecretWatch) -> None:
    client = watch.watch_client(new_client(site, HTTPS_ORIGIN))
    assert_cookie_attributes(site, journey(site, Browser(site, client)), secure=True)


def test_cookie_attributes_with_https_base_url_setting(make_harness: Callable[..., Harness],
                                                       watch: SecretWatch) -> None:
    # TLS ends at a proxy: the app sees http, the base_url setting says https.
    site = watch.attach(make_harness(base_url=HTTPS_ORIGIN))
    assert_cookie_attributes(site, journey(site, Browser(site, site.client)), secure=True)


def test_cookie_attributes_with_trusted_forwarded_proto(make_harness: Callable[..., Harness],
                                                        watch: SecretWatch) -> None:
    site = watch.attach(make_harness(trust_host=True))
    browser = Browser(site, site.client, headers={"x-forwarded-proto": "https", "x-forwarded-host": "app.example"})
    assert_cookie_attributes(site, journey(site, browser), secure=True)


def test_http_cookies_are_not_read_on_https(make_harness: Callable[..., Harness], watch: SecretWatch) -> None:
    # A cookie planted over plain http (no prefix) must not become the https session.
    plain = watch.attach(make_harness())
    pairs = small_session(plain)
    secure = watch.attach(make_harness(base_url=HTTPS_ORIGIN))
    response = present(secure, pairs)
    assert response.json()["authenticated"] is False
    assert session_written(response) == []
