"""The callback: state binding, replays, RFC 9207 `iss`, mix-up, provider errors, and token
responses that break the protocol."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from conftest import ORIGIN, Clock, Harness

from .security_support import (
    SESSION,
    SecretWatch,
    assert_error_redirect,
    assert_rejected_callback,
    assert_signed_in,
    begin_sign_in,
    deleted_names,
    jar,
    new_client,
    query_of,
    session_written,
    transaction_cookie,
    transaction_deleted,
)

CALLBACK = "/api/auth/callback/logto"




def with_params(callback: str, **changes: str | None) -> str:
    """The callback URL with some parameters replaced (None drops one)."""
    params: dict[str, str] = query_of(callback)
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    return f"{ORIGIN}{CALLBACK}?{urlencode(params)}"


def session_values(site: Harness) -> dict[str, str]:
    return {k: v for k, v in jar(site.client).items() if k.startswith(SESSION)}


# -- state --------------------------------------------------------------------------------------

@pytest.mark.parametrize("state", [None, "", "unknown-state-0123456789", "A" * 5000])
def test_missing_or_unknown_state_is_refused(site: Harness, state: str | None) -> None:
    callback, _ = begin_sign_in(site)
    response = site.client.get(with_params(callback, state=state))
    # No transaction of that state: nothing to clear, and the browser's own sign-in goes on.
    assert_rejected_callback(site, response, "MissingCSRF", cleared=False)
    assert site.fake.counts["token:authorization_code"] == 0  # the code never reached the provider
    assert_signed_in(site, site.client.get(callback))


def test_callback_without_transaction_cookie_is_refused(site: Harness) -> None:
    callback, _ = begin_sign_in(site)
    site.client.cookies.clear()
    response = site.client.get(callback)
    assert_error_redirect(response, "MissingCSRF")
    assert site.fake.counts["token:authorization_code"] == 0
    assert site.me()["authenticated"] is False


def test_tampered_transaction_cookie_is_refused(site: Harness) -> None:
    callback, _ = begin_sign_in(site)
    name, value = transaction_cookie(site.client)
    flipped = value[:40] + ("A" if value[40] != "A" else "B") + value[41:]
    response = site.client.get(callback, headers={"cookie": f"{name}={flipped}"})
    assert_error_redirect(response, "MissingCSRF")
    assert name in deleted_names(response)
    assert site.fake.counts["token:authorization_code"] == 0


def test_expired_transaction_is_refused(site: Harness, clock: Clock) -> None:
    callback, _ = begin_sign_in(site)
    clock.advance(15 * 60 + 1)
    name, value = transaction_cookie(site.client)
    response = site.client.get(callback, headers={"cookie": f"{name}={value}"})
    assert_error_redirect(response, "MissingCSRF")
    assert site.fake.counts["token:authorization_code"] == 0


def test_replayed_state_is_refused_even_with_the_old_transaction_cookie(site: Harness) -> None:
    callback, _ = begin_sign_in(site)
    name, transaction = transaction_cookie(site.client)
    assert_signed_in(site, site.client.get(callback))
    before = session_values(site)
    cookies = "; ".join([f"{name}={transaction}", *(f"{k}={v}" for k, v in before.items())])
    replay = site.client.get(callback, headers={"cookie": cookies})
    assert_error_redirect(replay, "MissingCSRF")
    assert site.fake.counts["token:authorization_code"] == 1  # the replay never reached the provider
    assert session_values(site) == before  # the existing session is untouched
    assert site.me()["authenticated"] is True


def test_replayed_callback_after_sign_in_is_refused(site: Harness) -> None:
    callback, _ = begin_sign_in(site)
    assert_signed_in(site, site.client.get(callback))
    before = session_values(site)
    replay = site.client.get(callback)  # the transaction cookie is gone by now
    assert_error_redirect(replay, "MissingCSRF")
    assert session_values(site) == before
    assert site.fake.counts["token:authorization_code"] == 1


def test_state_of_another_browser_is_refused(site: Harness, watch: SecretWatch) -> None:
    # Login CSRF: the attacker's callback URL (their code, their state) in the victim's browser.
    attacker = watch.watch_client(new_client(site))
    attacker_callback, _ = begin_sign_in(site, attacker, login="mallory")
    victim_callback, _ = begin_sign_in(site, login="alice")  # the victim has a transaction of its own
    response = site.client.get(attacker_callback)
    # No cookie of the attacker's state: refused, and the victim's own sign-in is left alone.
    assert_rejected_callback(site, response, "MissingCSRF", cleared=False)
    assert site.fake.counts["token:authorization_code"] == 0
    # The refusal did not burn the attacker's state for its own browser, nor the victim's sign-in.
    assert session_written(attacker.get(attacker_callback))
    assert_signed_in(site, site.client.get(victim_callback))


def test_victim_without_transaction_cannot_be_signed_in_as_attacker(site: Harness, watch: SecretWatch) -> None:
    attacker = watch.watch_client(new_client(site))
    attacker_callback, _ = begin_sign_in(site, attacker, login="mallory")
    response = site.client.get(attacker_callback)  # the victim never started a sign-in
    assert_error_redirect(response, "MissingCSRF")
    assert site.me()["authenticated"] is False


def test_authorization_code_used_twice_is_refused(site: Harness) -> None:
    first, _ = begin_sign_in(site)
    assert_signed_in(site, site.client.get(first))
    before = session_values(site)
    second, _ = begin_sign_in(site)  # a fresh transaction (new state) in the same browser
    reused = with_params(second, code=query_of(first)["code"])
    response = site.client.get(reused)
    assert_error_redirect(response, "OAuthCallbackError")
    assert transaction_deleted(response)
    assert site.fake.counts["token:authorization_code"] == 2
    assert session_values(site) == before  # the existing session is unchanged
    assert site.client.get(response.headers["location"]).status_code == 400


# -- RFC 9207 iss and mix-up --------------------------------------------------------------------

@pytest.mark.parametrize("iss", ["https://evil.example/oidc", "http://127.0.0.1:3001/oidc/",
                                 "http://127.0.0.1:3001", "HTTP://127.0.0.1:3001/oidc", ""])
def test_iss_parameter_other_than_the_issuer_is_refused(site: Harness, iss: str) -> None:
    callback, _ = begin_sign_in(site)
    response = site.client.get(with_params(callback, iss=iss))
    assert_rejected_callback(site, response, "OAuthCallbackError")
    assert site.fake.counts["token:authorization_code"] == 0


def test_missing_iss_is_refused_when_discovery_says_supported(site: Harness) -> None:
    callback, _ = begin_sign_in(site)
    response = site.client.get(with_params(callback, iss=None))
    assert_rejected_callback(site, response, "OAuthCallbackError")
    assert site.fake.counts["token:authorization_code"] == 0


def test_missing_iss_is_accepted_when_discovery_does_not_support_it(site: Harness) -> None:
    # Control for the test above: the refusal comes from the discovery flag.
    site.fake.discovery_overrides = {"authorization_response_iss_parameter_supported": None}
    callback, _ = begin_sign_in(site)
    assert_signed_in(site, site.client.get(with_params(callback, iss=None)))


def test_wrong_iss_is_refused_even_when_discovery_does_not_support_it(site: Harness) -> None:
    site.fake.discovery_overrides = {"authorization_response_iss_parameter_supported": None}
    callback, _ = begin_sign_in(site)
    response = site.client.get(with_params(callback, iss="https://evil.example/oidc"))
    assert_rejected_callback(site, response, "OAuthCallbackError")


@pytest.mark.parametrize("issuer", ["https://evil.example/oidc", "http://127.0.0.1:3001/oidc/",
                                    "http://127.0.0.1:3001/other"])
def test_discovery_for_another_issuer_is_refused(site: Harness, issuer: str) -> None:
    site.fake.discovery_overrides = {"issuer": issuer}
    response = site.start_sign_in()
    assert_error_redirect(response, "Configuration")
    assert response.headers.get_list("set-cookie") == []  # nothing started
    assert site.fake.counts["authorize"] == 0
    page = site.client.get(response.headers["location"])
    assert page.status_code == 502


@pytest.mark.parametrize("endpoint", ["authorization_endpoint", "token_endpoint", "jwks_uri"])
@pytest.mark.parametrize("value", ["javascript:alert(1)", "//evil.example/x", "", None])
def test_discovery_with_invalid_endpoint_is_refused(site: Harness, endpoint: str, value: str | None) -> None:
    site.fake.discovery_overrides = {endpoint: value}
    response = site.start_sign_in()
    assert_error_redirect(response, "Configuration")


# -- provider errors on the callback ------------------------------------------------------------

HTML_ERRORS = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>', "access_denied<svg/onload=alert(1)>",
               "javascript:alert(1)", "x" * 3000]


@pytest.mark.parametrize("error", HTML_ERRORS)
def test_error_parameter_with_html_is_never_reflected(site: Harness, error: str) -> None:
    callback, _ = begin_sign_in(site)
    response = site.client.get(with_params(callback, code=None, error=error,
                                           error_description=f"<b>{error}</b>", error_uri="javascript:alert(1)"))
    assert_rejected_callback(site, response, "OAuthCallbackError")
    page = site.client.get(response.headers["location"])
    assert page.status_code == 400
    for needle in (b"<script", b"<img", b"<svg", b"<b>", b"onerror", b"javascript:", b"xxxxxxxx"):
        assert needle not in page.content


def test_access_denied_ends_on_access_denied(site: Harness) -> None:
    callback, _ = begin_sign_in(site)
    response = site.client.get(with_params(callback, code=None, error="access_denied"))
    assert_rejected_callback(site, response, "AccessDenied")


@pytest.mark.parametrize("code", ['<script>alert(1)</script>', "Verification<img src=x>", "%3Cscript%3E",
                                  '"><svg onload=alert(1)>'])
def test_error_page_escapes_or_drops_unknown_codes(site: Harness, code: str) -> None:
    page = site.client.get("/api/auth/error", params={"error": code})
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
    assert b"<script" not in page.content and b"<img" not in page.content and b"<svg" not in page.content
    assert b"<code>Default</code>" in page.content
    as_json = site.client.get("/api/auth/error", params={"error": code}, headers={"accept": "application/json"})
    assert as_json.json() == {"error": "Default"}


def test_callback_error_without_state_is_refused_without_signing_in(site: Harness) -> None:
    response = site.client.get(CALLBACK, params={"error": "<script>x</script>"})
    assert_error_redirect(response, "OAuthCallbackError")
    assert site.me()["authenticated"] is False


# -- token responses that break the protocol ----------------------------------------------------

def _without_id_token(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "id_token"}


TOKEN_RESPONSES: dict[str, Any] = {
    "no_id_token": _without_id_token,
    "null_id_token": lambda body: {**body, "id_token": None},
    "token_type_mac": lambda body: {**body, "token_type": "mac"},
    "token_type_dpop": lambda body: {**body, "token_type": "DPoP"},
    "token_type_missing": lambda body: {k: v for k, v in body.items() if k != "token_type"},
    "no_access_token": lambda body: {k: v for k, v in body.items() if k != "access_token"},
    "access_token_number": lambda body: {**body, "access_token": 12345},
    "expires_in_negative": lambda body: {**body, "expires_in": -5},
    "expires_in_text": lambda body: {**body, "expires_in": "soon"},
    "refresh_token_object": lambda body: {**body, "refresh_token": {"value": "x"}},
    "non_json_200": lambda body: httpx.Response(200, content=b"<html>ok</html>", headers={"content-type": "text/html"}),
    "json_array_200": lambda body: httpx.Response(200, json=[body]),
    "json_string_200": lambda body: httpx.Response(200, json="access granted"),
    "empty_200": lambda body: httpx.Response(200, content=b""),
    "oversized_200": lambda body: httpx.Response(200, content=b'{"pad":"' + b"x" * 600_000 + b'"}'),
    "non_json_400": lambda body: httpx.Response(400, content=b"Bad Request"),
    "redirect_302": lambda body: httpx.Response(302, headers={"location": "https://evil.example/"}),
}


@pytest.mark.parametrize("variant", sorted(TOKEN_RESPONSES))
def test_token_response_breaking_the_protocol_is_refused(site: Harness, watch: SecretWatch, variant: str) -> None:
    callback, _ = begin_sign_in(site)
    watch.rewrite = TOKEN_RESPONSES[variant]
    response = site.client.get(callback)
    assert_rejected_callback(site, response, "Configuration")


@pytest.mark.parametrize(("status", "error", "expected"), [
    (400, "invalid_grant", "OAuthCallbackError"),
    (401, "invalid_client", "OAuthCallbackError"),
    (400, "<script>alert(1)</script>", "OAuthCallbackError"),
    (503, "temporarily_unavailable", "ProviderUnavailable"),
    (500, "server_error", "ProviderUnavailable"),
])
def test_token_endpoint_error_is_refused(site: Harness, watch: SecretWatch, status: int, error: str,
                                         expected: str) -> None:
    callback, _ = begin_sign_in(site)
    watch.rewrite = lambda body: httpx.Response(status, json={"error": error, "error_description": "<b>no</b>"})
    response = site.client.get(callback)
    assert_rejected_callback(site, response, expected)


@pytest.mark.parametrize("failure", ["token_endpoint_no_id_token", "token_endpoint_outage"])
def test_provider_failure_at_callback_clears_transaction(site: Harness, watch: SecretWatch, failure: str) -> None:
    """Every refused callback clears the one-shot transaction cookie: its state is spent (marked
    used in this process) and the code may be too, so it can only ever fail again."""
    callback, _ = begin_sign_in(site)
    if failure == "token_endpoint_no_id_token":
        watch.rewrite = _without_id_token
    else:
        site.fake.outage.add("token")
    response = site.client.get(callback)
    assert_error_redirect(response, "Configuration" if failure == "token_endpoint_no_id_token"
                          else "ProviderUnavailable")
    assert transaction_deleted(response), response.headers.get_list("set-cookie")
