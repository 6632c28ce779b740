"""Host and X-Forwarded-* headers: the redirect_uri sent to the provider (and every absolute
URL the middleware builds) cannot be steered to another host unless trust_host says so."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from conftest import ORIGIN, Harness

from .security_support import (
    HTTPS_ORIGIN,
    SecretWatch,
    assert_signed_in,
    begin_sign_in,
    query_of,
)

CALLBACK_PATH = "/api/auth/callback/logto"




def redirect_uri(site: Harness, headers: dict[str, str]) -> str:
    response = site.client.get("/api/auth/signin", headers=headers)
    assert response.status_code == 302, response.text
    return query_of(response.headers["location"])["redirect_uri"]


def absolute_urls(site: Harness, headers: dict[str, str]) -> list[str]:
    """Every absolute URL of the app the middleware derives from the request."""
    providers = site.client.get("/api/auth/providers", headers=headers).json()["logto"]
    error = site.client.get(CALLBACK_PATH, headers=headers)  # no transaction: the error page redirect
    return [redirect_uri(site, headers), providers["signinUrl"], providers["callbackUrl"], error.headers["location"]]


FORGED_FORWARDING = {
    "x_forwarded_host": {"x-forwarded-host": "evil.example"},
    "x_forwarded_host_and_proto": {"x-forwarded-host": "evil.example", "x-forwarded-proto": "https"},
    "x_forwarded_host_list": {"x-forwarded-host": "evil.example, localhost:3000"},
    "forwarded_rfc7239": {"forwarded": "host=evil.example;proto=https"},
    "x_original_host": {"x-original-host": "evil.example"},
    "x_host": {"x-host": "evil.example"},
    "x_forwarded_server": {"x-forwarded-server": "evil.example"},
    "x_forwarded_port": {"x-forwarded-port": "4444"},
    "x_forwarded_proto_only": {"x-forwarded-proto": "https"},
}


@pytest.mark.parametrize("variant", sorted(FORGED_FORWARDING))
def test_forged_forwarding_headers_are_ignored_without_trust_host(site: Harness, variant: str) -> None:
    headers = FORGED_FORWARDING[variant]
    for url in absolute_urls(site, headers):
        assert url.startswith(ORIGIN + "/"), url
    response = site.client.get("/api/auth/signin", headers=headers)
    assert "Secure" not in response.headers["set-cookie"]  # not fooled into https either


MALFORMED_HOSTS = ["evil.example/", "localhost:3000@evil.example", "evil.example\\", "localhost:3000/evil.example",
                   "evil.example:80:80", "evil.example#", "evil.example?x", "evil example", "[evil.example]",
                   "localhost:3000, evil.example", "evil.example:99999999",
                   # a `$` anchor matches before a final newline: the whole value must match
                   "evil.example\n", "localhost:3000\n", "evil.example:3000\n"]


@pytest.mark.parametrize("host", MALFORMED_HOSTS)
def test_malformed_host_header_falls_back_to_the_server(site: Harness, host: str) -> None:
    uri = redirect_uri(site, {"host": host})
    assert "evil" not in uri
    assert uri == f"{ORIGIN}{CALLBACK_PATH}"


@pytest.mark.parametrize("headers", [{"host": "evil.example"},
                                     {"host": "evil.example", "x-forwarded-host": "evil2.example"},
                                     {"x-forwarded-host": "evil.example", "x-forwarded-proto": "http"}])
@pytest.mark.parametrize("trust_host", [False, True])
def test_base_url_setting_wins_over_every_header(make_harness: Callable[..., Harness], watch: SecretWatch,
                                                 headers: dict[str, str], trust_host: bool) -> None:
    site = watch.attach(make_harness(base_url=HTTPS_ORIGIN, trust_host=trust_host))
    for url in absolute_urls(site, headers):
        assert url.startswith(HTTPS_ORIGIN + "/"), url


def test_redirect_uri_of_the_token_request_is_the_one_of_the_authorization(site: Harness) -> None:
    # Whatever Host the callback request carries, the code is redeemed with the original redirect_uri.
    callback, request = begin_sign_in(site)
    path = httpx.URL(callback).raw_path.decode()
    response = site.client.get(path, headers={"x-forwarded-host": "evil.example", "host": "localhost:3000"})
    assert_signed_in(site, response)
    token_requests = [params for method, p, params in site.fake.requests if p.endswith("/token")]
    assert token_requests[-1]["redirect_uri"] == request["redirect_uri"] == f"{ORIGIN}{CALLBACK_PATH}"


@pytest.mark.parametrize(("headers", "expected"), [
    ({"x-forwarded-host": "proxy.example"}, "http://proxy.example"),
    ({"x-forwarded-host": "proxy.example", "x-forwarded-proto": "https"}, "https://proxy.example"),
    ({"x-forwarded-host": "proxy.example:8443, internal:80", "x-forwarded-proto": "https, http"},
     "https://proxy.example:8443"),
    ({"x-forwarded-host": "PROXY.Example"}, "http://proxy.example"),
])
def test_trust_host_honours_forwarded_headers(make_harness: Callable[..., Harness], watch: SecretWatch,
                                              headers: dict[str, str], expected: str) -> None:
    site = watch.attach(make_harness(trust_host=True))
    for url in absolute_urls(site, headers):
        assert url.startswith(expected + "/"), url


@pytest.mark.parametrize("forwarded", ["evil.example/x", "a@evil.example", "evil.example\\", "<script>", " "])
def test_trust_host_still_rejects_malformed_forwarded_host(make_harness: Callable[..., Harness],
                                                           watch: SecretWatch, forwarded: str) -> None:
    site = watch.attach(make_harness(trust_host=True))
    uri = redirect_uri(site, {"x-forwarded-host": forwarded})
    assert "evil" not in uri and "<" not in uri
    assert uri.startswith(("http://localhost", "http://testserver")), uri


@pytest.mark.parametrize("proto", ["javascript", "ftp", "HTTPS://", "https;", ""])
def test_trust_host_ignores_unknown_forwarded_proto(make_harness: Callable[..., Harness], watch: SecretWatch,
                                                    proto: str) -> None:
    site = watch.attach(make_harness(trust_host=True))
    uri = redirect_uri(site, {"x-forwarded-proto": proto})
    assert uri == f"{ORIGIN}{CALLBACK_PATH}"
