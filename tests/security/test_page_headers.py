"""Clickjacking: the middleware's own HTML pages (sign-out, every error, the store-unavailable
page) refuse framing and run no script; every answer of ours, HTML or JSON, is `no-store`."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from conftest import Harness

from logto_middleware._core.pages import ERRORS
from logto_middleware.errors import StoreUnavailable
from logto_middleware.flow import Flow
from logto_middleware.stores import MemoryStore

from .security_support import SecretWatch, assert_signed_in


def directives(policy: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name.lower()] = values
    return parsed


def assert_unframeable_page(response: httpx.Response) -> None:
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"
    csp = directives(response.headers["content-security-policy"])
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["default-src"] == ["'none'"] and "script-src" not in csp  # no script at all
    assert "<script" not in response.text


@pytest.mark.parametrize("path", ["/api/auth/signout", "/api/auth/error", "/api/auth/error?error=unknown<x>",
                                  *(f"/api/auth/error?error={code}" for code in sorted(ERRORS))])
def test_own_pages_refuse_framing_and_scripts(site: Harness, path: str) -> None:
    assert_unframeable_page(site.client.get(path))


class FailingStore(MemoryStore):
    """A store that goes down on demand, as Redis would."""

    down = False

    def get(self, key: str) -> Flow[bytes | None]:
        if self.down:
            raise StoreUnavailable("store is down")
        return super().get(key)


@pytest.mark.modes("memory", reason="the test brings its own failing server-side store")
def test_store_unavailable_page_refuses_framing(make_harness: Callable[..., Harness], watch: SecretWatch) -> None:
    store = FailingStore()
    site = watch.attach(make_harness(store=store))
    assert_signed_in(site, site.sign_in("alice"))
    store.down = True
    page = site.client.get("/")
    assert page.status_code == 503
    assert_unframeable_page(page)


@pytest.mark.parametrize(("method", "path", "headers"), [
    ("GET", "/api/auth/session", {}), ("GET", "/api/auth/csrf", {}), ("GET", "/api/auth/providers", {}),
    ("GET", "/api/auth/error?error=AccessDenied", {"accept": "application/json"}), ("GET", "/api/auth/nope", {}),
    ("POST", "/api/auth/backchannel-logout", {}), ("POST", "/api/auth/signout", {"accept": "application/json"}),
])
def test_json_answers_are_never_cached(site: Harness, method: str, path: str, headers: dict[str, str]) -> None:
    response = site.client.request(method, path, headers=headers)
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    response.json()
