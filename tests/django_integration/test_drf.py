"""Django REST framework: the cookie session class and the bearer token class."""

from __future__ import annotations

from typing import Any

from django.test import Client
from django.test.utils import override_settings

from logto_middleware.django.testing import sign_in
from logto_middleware.testing import FakeLogto

API = "https://api.example.com"


def access_token(fake: FakeLogto, clock: Any, **overrides: Any) -> str:
    now = int(clock())
    claims = {"iss": fake.issuer, "sub": "machine-1", "aud": API, "exp": now + 3600, "iat": now, "jti": "j1",
              "client_id": fake.client_id, "scope": "read:items", **overrides}
    return fake.sign_id_token(claims, headers={"typ": "at+jwt"})


def bearer_settings(fake: FakeLogto, clock: Any) -> dict[str, Any]:
    return {"audience": API, "http_client": fake.httpx_client(), "clock": clock}


def test_session_authentication(logto: dict[str, Any]) -> None:
    client = Client(enforce_csrf_checks=True)
    assert client.get("/drf/items").status_code == 401  # authenticate_header: a 401, not a 403
    sign_in(client, claims={"sub": "drf-user"})
    answer = client.get("/drf/items")
    assert answer.status_code == 200, answer.content
    assert answer.json()["type"] == "User" and answer.json()["auth"] == "DjangoSession"
    # The cookie rides along on its own: an unsafe method needs Django's CSRF token.
    assert client.post("/drf/items").status_code == 403


def test_bearer_authentication(logto: dict[str, Any], fake: FakeLogto, clock: Any) -> None:
    with override_settings(LOGTO_BEARER=bearer_settings(fake, clock)):
        client = Client()
        good = client.get("/drf/items", HTTP_AUTHORIZATION=f"Bearer {access_token(fake, clock)}")
        assert good.status_code == 200, good.content
        assert good.json() == {"type": "AccessTokenUser", "id": "machine-1", "auth": "str"}
        # Tokens are never posted from a browser on their own: no CSRF for them.
        assert client.post("/drf/items", HTTP_AUTHORIZATION=f"Bearer {access_token(fake, clock)}").status_code == 200
        for bad in (access_token(fake, clock, aud="https://other.example"), "not-a-jwt",
                    access_token(fake, clock, exp=int(clock()) - 3600)):
            refused = client.get("/drf/items", HTTP_AUTHORIZATION=f"Bearer {bad}")
            assert refused.status_code == 401, bad
            assert refused["WWW-Authenticate"].startswith("Bearer")


def test_session_without_contrib_auth(logto_without_auth: dict[str, Any]) -> None:
    client = Client()
    sign_in(client, claims={"sub": "plain-user"})
    answer = client.get("/drf/items")
    assert answer.status_code == 200, answer.content
    assert answer.json()["type"] == "LogtoUser" and answer.json()["id"] == "plain-user"


def test_a_bearer_token_decides_whatever_the_order_of_the_classes(logto: dict[str, Any], fake: FakeLogto,
                                                                  clock: Any) -> None:
    with override_settings(LOGTO_BEARER=bearer_settings(fake, clock)):
        client = Client(enforce_csrf_checks=True)
        sign_in(client, claims={"sub": "drf-user"})
        for url in ("/drf/items", "/drf/session-first"):
            assert client.get(url).json()["type"] == "User"  # the cookie alone: the session's user
            good = client.get(url, HTTP_AUTHORIZATION=f"Bearer {access_token(fake, clock)}")
            assert good.status_code == 200 and good.json()["type"] == "AccessTokenUser", (url, good.content)
            # A bad token beside a good cookie: refused, never the cookie's user.
            bad = client.get(url, HTTP_AUTHORIZATION=f"Bearer {access_token(fake, clock, aud='https://x.example')}")
            assert bad.status_code == 401, (url, bad.content)
            assert bad["WWW-Authenticate"].startswith("Bearer")
