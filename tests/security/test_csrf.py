"""Sign-out (and POST sign-in) CSRF: cross-origin requests need the browser's own token."""

from __future__ import annotations

import hashlib
import hmac

import httpx
import pytest
from conftest import ORIGIN, Harness

from logto_middleware._sessions.cipher import derive_key

from .security_support import (
    SecretWatch,
    assert_signed_in,
    csrf_cookie,
    deleted_names,
    is_session_cookie,
    is_transaction,
    jar,
    new_client,
    parse_set_cookie,
)

FORM = {"content-type": "application/x-www-form-urlencoded"}



@pytest.fixture
def site(harness: Harness, watch: SecretWatch) -> Harness:
    assert_signed_in(watch.attach(harness), harness.sign_in("alice"))
    return harness


def assert_refused(site: Harness, response: httpx.Response) -> None:
    """403 MissingCSRF, the session neither cleared nor revoked."""
    assert response.status_code == 403, (response.status_code, response.headers.get("location"))
    assert response.json() == {"error": "MissingCSRF"}
    assert not any(is_session_cookie(name) for name in deleted_names(response))
    assert site.fake.counts["revocation"] == 0
    assert site.me()["authenticated"] is True


def assert_still_signed_in(site: Harness, response: httpx.Response) -> None:
    assert response.status_code != 500
    assert not any(is_session_cookie(name) for name in deleted_names(response))
    assert site.fake.counts["revocation"] == 0
    assert site.me()["authenticated"] is True


def csrf_token(client: httpx.Client) -> str:
    response = client.get("/api/auth/csrf")
    assert response.status_code == 200
    return str(response.json()["csrfToken"])


CROSS_ORIGIN = {
    "evil_origin": {"origin": "https://evil.example"},
    "null_origin": {"origin": "null"},
    "other_scheme": {"origin": "https://localhost:3000"},
    "other_port": {"origin": "http://localhost:3001"},
    "suffix_host": {"origin": "http://localhost:3000.evil.example"},
    "origin_with_path": {"origin": "http://localhost:3000/"},
    "sec_fetch_cross_site": {"sec-fetch-site": "cross-site"},
    "sec_fetch_same_site": {"sec-fetch-site": "same-site"},
    "referer_only": {"referer": f"{ORIGIN}/page"},
    "nothing": {},
}


@pytest.mark.parametrize("variant", sorted(CROSS_ORIGIN))
def test_cross_origin_sign_out_without_token_is_refused(site: Harness, variant: str) -> None:
    response = site.client.post("/api/auth/signout", headers=CROSS_ORIGIN[variant])
    assert_refused(site, response)


@pytest.mark.parametrize("variant", sorted(CROSS_ORIGIN))
def test_cross_origin_sign_out_with_wrong_token_is_refused(site: Harness, variant: str) -> None:
    csrf_token(site.client)  # the browser has a genuine cookie; the attacker does not know its token
    response = site.client.post("/api/auth/signout", content="csrfToken=" + "0" * 64,
                                headers={**CROSS_ORIGIN[variant], **FORM})
    assert_refused(site, response)


def test_token_in_the_query_string_does_not_count(site: Harness) -> None:
    # Tokens in URLs leak through Referer and logs: only the form field or the header count.
    token = csrf_token(site.client)
    response = site.client.post(f"/api/auth/signout?csrfToken={token}", headers={"origin": "https://evil.example"})
    assert_refused(site, response)


@pytest.mark.parametrize("request_kind", ["get", "get_with_token", "get_same_origin", "head"])
def test_get_never_signs_out(site: Harness, request_kind: str) -> None:
    token = csrf_token(site.client)
    if request_kind == "head":
        response = site.client.head("/api/auth/signout")
    elif request_kind == "get_with_token":
        response = site.client.get("/api/auth/signout", params={"csrfToken": token, "callbackUrl": "/"})
    elif request_kind == "get_same_origin":
        response = site.client.get("/api/auth/signout", headers={"origin": ORIGIN, "sec-fetch-site": "same-origin"})
    else:
        response = site.client.get("/api/auth/signout")
    assert response.status_code == 200
    assert_still_signed_in(site, response)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_never_sign_out(site: Harness, method: str) -> None:
    response = site.client.request(method, "/api/auth/signout", headers={"origin": ORIGIN})
    assert response.status_code == 405
    assert_still_signed_in(site, response)


@pytest.mark.parametrize("where", ["form", "header"])
def test_token_from_another_browsers_cookie_fails(site: Harness, watch: SecretWatch, where: str) -> None:
    other = watch.watch_client(new_client(site))
    foreign = csrf_token(other)
    own = csrf_token(site.client)
    assert foreign != own
    if where == "form":
        response = site.client.post("/api/auth/signout", content=f"csrfToken={foreign}", headers=FORM)
    else:
        response = site.client.post("/api/auth/signout", headers={"x-csrf-token": foreign})
    assert_refused(site, response)


def test_token_of_another_browser_without_own_cookie_fails(site: Harness, watch: SecretWatch) -> None:
    other = watch.watch_client(new_client(site))
    foreign = csrf_token(other)
    assert csrf_cookie(site) not in jar(site.client)
    response = site.client.post("/api/auth/signout", content=f"csrfToken={foreign}", headers=FORM)
    assert_refused(site, response)


def _session_cookies(site: Harness) -> list[str]:
    return [f"{k}={v}" for k, v in jar(site.client).items() if k.startswith(site.session_cookie)]


def _foreign_tag(token: str) -> str:
    key = derive_key("another-deployment-secret-0123456789abcdef", "logto-middleware csrf token")
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


FORGED_COOKIES = {
    "bad_hmac": lambda token, other: f"{token}|{'0' * 64}",
    "hmac_not_hex": lambda token, other: f"{token}|not-a-tag",
    "empty_hmac": lambda token, other: f"{token}|",
    "no_separator": lambda token, other: token,
    "tag_of_another_token": lambda token, other: f"{token}|{other.partition('|')[2]}",
    "hmac_with_another_secret": lambda token, other: f"{token}|{_foreign_tag(token)}",
    "plain_sha256": lambda token, other: f"{token}|{hashlib.sha256(token.encode()).hexdigest()}",
    "extra_segment": lambda token, other: f"{other}|extra",
    # URL-encoded (as Auth.js writes it), so the tag is not ASCII once decoded.
    "non_ascii_tag": lambda token, other: f"{token}|{'%C3%A9' * 64}",
}


@pytest.mark.parametrize("forgery", sorted(FORGED_COOKIES))
def test_forged_csrf_cookie_fails(site: Harness, watch: SecretWatch, forgery: str) -> None:
    other = watch.watch_client(new_client(site))
    csrf_token(other)
    genuine_other = jar(other)[csrf_cookie(site)]
    token = "f" * 64
    cookie = FORGED_COOKIES[forgery](token, genuine_other)
    submitted = cookie.partition("|")[0]
    response = site.client.post("/api/auth/signout", content=f"csrfToken={submitted}", headers={
        **FORM, "cookie": "; ".join([*_session_cookies(site), f"{csrf_cookie(site)}={cookie}"])})
    assert_refused(site, response)


def test_forged_csrf_cookie_is_replaced_not_trusted(site: Harness) -> None:
    response = site.client.get("/api/auth/csrf", headers={
        "cookie": "; ".join([*_session_cookies(site), f"{csrf_cookie(site)}={'f' * 64}|{'0' * 64}"])})
    assert response.json()["csrfToken"] != "f" * 64
    assert any(h.startswith(f"{csrf_cookie(site)}=") for h in response.headers.get_list("set-cookie"))


@pytest.mark.parametrize("where", ["form", "header", "same_origin"])
def test_control_own_token_or_same_origin_signs_out(site: Harness, where: str) -> None:
    # Control: the refusals above come from the CSRF check, not from a broken sign-out.
    if where == "form":
        response = site.client.post("/api/auth/signout", data={"csrfToken": csrf_token(site.client)})
    elif where == "header":
        response = site.client.post("/api/auth/signout", headers={"x-csrf-token": csrf_token(site.client)})
    else:
        response = site.client.post("/api/auth/signout", headers={"origin": ORIGIN})
    assert response.status_code == 302
    assert site.me()["authenticated"] is False


@pytest.mark.parametrize("variant", ["evil_origin", "null_origin", "nothing", "sec_fetch_cross_site"])
def test_cross_origin_post_sign_in_without_token_is_refused(site: Harness, variant: str) -> None:
    # Login CSRF through the POST form: no transaction may start.
    response = site.client.post("/api/auth/signin", content="callbackUrl=/", headers={**CROSS_ORIGIN[variant], **FORM})
    assert response.status_code == 403
    assert response.json() == {"error": "MissingCSRF"}
    assert not any(is_transaction(parse_set_cookie(h)[0]) for h in response.headers.get_list("set-cookie"))
    assert site.fake.counts["authorize"] == 1  # only the fixture's own sign-in


def test_post_sign_in_with_token_of_another_browser_is_refused(site: Harness, watch: SecretWatch) -> None:
    other = watch.watch_client(new_client(site))
    csrf_token(site.client)
    response = site.client.post("/api/auth/signin", content=f"csrfToken={csrf_token(other)}", headers=FORM)
    assert response.status_code == 403
