"""The bearer-token validator: every rejection path, and its three uses (ASGI, WSGI, per endpoint)."""

from __future__ import annotations

from typing import Any

import flask
import httpx
import pytest
from conftest import Clock
from joserfc.jwk import ECKey
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from logto_middleware import (
    BearerASGIMiddleware,
    BearerAuthBackend,
    BearerValidator,
    BearerWSGIMiddleware,
    requires_bearer,
)
from logto_middleware.testing import FakeLogto

API = "https://api.example.com"


def token(fake: FakeLogto, clock: Clock, **overrides: Any) -> str:
    now = int(clock())
    claims = {"iss": fake.issuer, "sub": "user-1", "aud": API, "exp": now + 3600, "iat": now, "jti": "j1",
              "client_id": fake.client_id, "scope": "read:items"}
    claims.update(overrides)
    return fake.sign_id_token({k: v for k, v in claims.items() if v is not None}, headers={"typ": "at+jwt"})


@pytest.fixture
def validator(fake: FakeLogto, clock: Clock) -> BearerValidator:
    return BearerValidator(fake.issuer, API, http_client=fake.httpx_client(),
                           async_http_client=fake.async_httpx_client(), clock=clock)


def starlette_api(validator: BearerValidator) -> TestClient:
    @requires("read:items")
    async def items(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.user.identity, "scopes": request.auth.scopes})

    @requires_bearer(validator, "write:items")
    async def write(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.state.access_token_user.id})

    app = Starlette(routes=[Route("/items", items), Route("/write", write, methods=["POST"])],
                    middleware=[Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(validator),
                                           on_error=BearerAuthBackend.on_error)])
    return TestClient(app)


def test_valid_token_passes_with_scopes(validator: BearerValidator, fake: FakeLogto, clock: Clock) -> None:
    client = starlette_api(validator)
    response = client.get("/items", headers={"authorization": f"Bearer {token(fake, clock)}"})
    assert response.status_code == 200
    assert response.json() == {"user": "user-1", "scopes": ["authenticated", "read:items"]}


def test_verified_tokens_are_cached(validator: BearerValidator, fake: FakeLogto, clock: Clock) -> None:
    value = token(fake, clock)
    for _ in range(3):
        validator.verify_sync(f"Bearer {value}")
    assert fake.counts["jwks"] == 1
    clock.advance(3700)  # expired: the cache does not hide it
    with pytest.raises(Exception, match="expired"):
        validator.verify_sync(f"Bearer {value}")


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"aud": "https://other.example.com"}, "audience"),
    ({"iss": "https://evil.example/oidc"}, "issuer"),
    ({"exp": 1}, "expired"),
    ({"nbf": 9_999_999_999}, "not valid yet"),
])
def test_bad_claims_are_401_invalid_token(validator: BearerValidator, fake: FakeLogto, clock: Clock,
                                          overrides: dict[str, Any], reason: str) -> None:
    client = starlette_api(validator)
    response = client.get("/items", headers={"authorization": f"Bearer {token(fake, clock, **overrides)}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="api", error="invalid_token"')
    assert reason in response.json()["error_description"]


def test_forged_signature_and_foreign_keys_are_401(validator: BearerValidator, fake: FakeLogto, clock: Clock) -> None:
    client = starlette_api(validator)
    good = token(fake, clock)
    header, payload, signature = good.split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"
    foreign = fake.sign_id_token({"iss": fake.issuer, "sub": "x", "aud": API, "exp": int(clock()) + 60,
                                  "iat": int(clock()), "scope": "read:items"}, key=ECKey.generate_key("P-384"))
    for value in (tampered, foreign, "not.a.jwt", "a.b.c.d.e"):
        response = client.get("/items", headers={"authorization": f"Bearer {value}"})
        assert response.status_code == 401, value


def test_missing_scope_is_403_insufficient_scope(validator: BearerValidator, fake: FakeLogto, clock: Clock) -> None:
    client = starlette_api(validator)
    response = client.post("/write", headers={"authorization": f"Bearer {token(fake, clock)}"})
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert 'scope="write:items"' in response.headers["www-authenticate"]
    assert response.json()["error"] == "insufficient_scope"
    ok = client.post("/write", headers={"authorization": f"Bearer {token(fake, clock, scope='write:items')}"})
    assert ok.status_code == 200 and ok.json() == {"user": "user-1"}


def test_missing_token_is_401_without_error_code(validator: BearerValidator) -> None:
    client = starlette_api(validator)
    assert client.get("/items").status_code == 403  # anonymous: @requires refuses
    response = client.post("/write")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'


def test_organization_tokens(fake: FakeLogto, clock: Clock) -> None:
    validator = BearerValidator(fake.issuer, organization=True, http_client=fake.httpx_client(), clock=clock)
    org = token(fake, clock, aud="urn:logto:organization:org-1", organization_id="org-1")
    assert validator.verify_sync(f"Bearer {org}").organization_id == "org-1"
    with pytest.raises(Exception, match="organization"):
        validator.verify_sync(f"Bearer {token(fake, clock)}")


def test_asgi_middleware(validator: BearerValidator, fake: FakeLogto, clock: Clock) -> None:
    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.user.display_name})

    app = BearerASGIMiddleware(Starlette(routes=[Route("/me", me)]), validator, required=True,
                               required_scopes=["read:items"])
    client = TestClient(app)
    assert client.get("/me", headers={"authorization": f"Bearer {token(fake, clock)}"}).json() == {"user": "user-1"}
    assert client.get("/me").status_code == 401
    assert client.get("/me", headers={"authorization": "Bearer garbage"}).status_code == 401
    assert client.get("/me", headers={"authorization": f"Bearer {token(fake, clock, scope='')}"}).status_code == 403


def test_wsgi_middleware_and_flask_decorator(validator: BearerValidator, fake: FakeLogto, clock: Clock) -> None:
    app = flask.Flask(__name__)

    @app.get("/me")
    def me() -> Any:
        user = flask.request.environ["logto.access_token_user"]
        return {"user": user.id if user else None}

    @app.get("/items")
    @requires_bearer(validator, "read:items")
    def items() -> Any:
        return {"user": flask.g.access_token_user.id}

    client = httpx.Client(transport=httpx.WSGITransport(app=BearerWSGIMiddleware(app.wsgi_app, validator)),
                          base_url="http://api.local")
    good = {"authorization": f"Bearer {token(fake, clock)}"}
    assert client.get("/me").json() == {"user": None}
    assert client.get("/me", headers=good).json() == {"user": "user-1"}
    assert client.get("/me", headers={"authorization": "Bearer x.y.z"}).status_code == 401
    assert client.get("/items", headers=good).json() == {"user": "user-1"}
    plain = httpx.Client(transport=httpx.WSGITransport(app=app.wsgi_app), base_url="http://api.local")
    denied = plain.get("/items", headers={"authorization": f"Bearer {token(fake, clock, scope='other')}"})
    assert denied.status_code == 403 and 'scope="read:items"' in denied.headers["www-authenticate"]


def test_provider_down_is_503_not_500(fake: FakeLogto, clock: Clock) -> None:
    validator = BearerValidator(fake.issuer, API, http_client=fake.httpx_client(), clock=clock)
    fake.outage.add("discovery")
    with pytest.raises(Exception) as info:
        validator.verify_sync(f"Bearer {token(fake, clock)}")
    assert getattr(info.value, "status", None) == 503


def test_fastapi_style_dependency(validator: BearerValidator, fake: FakeLogto, clock: Clock) -> None:
    dependency = validator.dependency("read:items")

    async def endpoint(request: Request) -> JSONResponse:
        user = await dependency(request)
        return JSONResponse({"user": user.id})

    client = TestClient(Starlette(routes=[Route("/x", endpoint)]), raise_server_exceptions=False)
    assert client.get("/x", headers={"authorization": f"Bearer {token(fake, clock)}"}).json() == {"user": "user-1"}
    refused = client.get("/x")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == 'Bearer realm="api"'


def test_an_id_token_is_not_an_access_token(validator: BearerValidator, fake: FakeLogto, clock: Clock) -> None:
    now = int(clock())
    id_token = fake.sign_id_token({"iss": fake.issuer, "sub": "u1", "aud": API, "exp": now + 600, "iat": now,
                                   "scope": "read:items"})  # typ JWT
    with pytest.raises(Exception, match="type"):
        validator.verify_sync(f"Bearer {id_token}", ["read:items"])
