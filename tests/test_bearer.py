"""The bearer-token validator: every rejection path, and its three uses (ASGI, WSGI, per endpoint)."""

from __future__ import annotations

from collections.abc import Callable
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
    BearerError,
    BearerValidator,
    BearerWSGIMiddleware,
    requires_bearer,
)
from logto_middleware.testing import FakeLogto

API = "https://api.example.com"
ORG = "urn:logto:organization:"


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


def test_an_apps_own_on_error_gets_a_bearer_error(validator: BearerValidator, fake: FakeLogto, clock: Clock) -> None:
    # Starlette's AuthenticationMiddleware answers `on_error` only for its own AuthenticationError;
    # BearerError no longer derives from it (a WSGI app never imports Starlette), so the backend
    # raises one that is both. Without that the refusal escapes the middleware: a 500.
    from starlette.authentication import AuthenticationError

    seen: list[Exception] = []

    def on_error(conn: Any, exc: AuthenticationError) -> JSONResponse:
        seen.append(exc)
        return JSONResponse({"refused": str(exc)}, status_code=getattr(exc, "status", 400))

    @requires("read:items")
    async def items(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.user.display_name})

    app = Starlette(routes=[Route("/items", items)],
                    middleware=[Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(validator),
                                           on_error=on_error)])
    client = TestClient(app, raise_server_exceptions=False)
    expired = token(fake, clock, exp=1)
    assert client.get("/items", headers={"authorization": f"Bearer {expired}"}).status_code == 401
    assert isinstance(seen[0], BearerError) and isinstance(seen[0], AuthenticationError)
    assert seen[0].error == "invalid_token" and "expired" in seen[0].description
    assert client.get("/items", headers={"authorization": f"Bearer {token(fake, clock)}"}).json() == {"user": "user-1"}


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


def logto_token(fake: FakeLogto, audience: str, scope: str = "read:members", **overrides: Any) -> str:
    """An access token minted the way FakeLogto's token endpoint mints them (Logto's shape: an
    organization token has its organization in `aud` and no `organization_id` claim)."""
    return fake.sign_access_token(fake.make_access_token_claims("alice", audience, scope=scope, **overrides))


def org_validator(fake: FakeLogto, clock: Clock) -> BearerValidator:
    return BearerValidator(fake.issuer, organization=True, http_client=fake.httpx_client(),
                           async_http_client=fake.async_httpx_client(), clock=clock)


def test_organization_tokens(fake: FakeLogto, clock: Clock) -> None:
    validator = org_validator(fake, clock)
    org = logto_token(fake, f"{ORG}org-1")
    assert "organization_id" not in fake.make_access_token_claims("alice", f"{ORG}org-1")
    assert validator.verify_sync(f"Bearer {org}").organization_id == "org-1"  # from `aud`
    assert validator.verify_sync(f"Bearer {org}", organization_id="org-1").organization_id == "org-1"
    with pytest.raises(Exception, match="organization"):
        validator.verify_sync(f"Bearer {token(fake, clock)}")


@pytest.mark.parametrize(("aud", "extra", "expected", "outcome"), [
    # outcome: the organization accepted, or the refusal's status
    ("org-a", {}, "org-a", "org-a"),
    ("org-a", {}, "org-b", 403),
    ("org-a", {}, "ORG-A", 403),
    ("org-a", {}, "org-a ", 403),
    ("org-a", {}, "", 403),
    (["org-a", "org-b"], {}, None, 401),            # several organizations: ambiguous
    (["org-a", "org-b"], {}, "org-b", "org-b"),     # ...unless the endpoint's is among them
    (["org-a", "org-b"], {}, "org-c", 403),
    ("org-a", {"organization_id": "org-b"}, None, 401),  # a claim that contradicts `aud`
    ("org-a", {"organization_id": "org-b"}, "org-b", 401),
    ("org-a", {"organization_id": "org-a"}, "org-a", "org-a"),
    ("org-a", {"organization_id": ["org-a"]}, "org-a", 401),
    ("o:r/g%20a b\u00e9", {}, "o:r/g%20a b\u00e9", "o:r/g%20a b\u00e9"),  # odd ids: compared exactly
    ("o:r/g%20a b\u00e9", {}, "o:r/g a b\u00e9", 403),
    ("", {}, None, 401),                            # `urn:logto:organization:` names none
])
def test_organization_token_is_accepted_only_for_its_organization(
        fake: FakeLogto, clock: Clock, aud: str | list[str], extra: dict[str, Any], expected: str | None,
        outcome: str | int) -> None:
    validator = org_validator(fake, clock)
    audience = [f"{ORG}{a}" for a in aud] if isinstance(aud, list) else f"{ORG}{aud}"
    value = logto_token(fake, ORG, aud=audience, **extra)
    if isinstance(outcome, str):
        user = validator.verify_sync(f"Bearer {value}", ["read:members"], organization_id=expected)
        assert user.organization_id == outcome
        return
    with pytest.raises(BearerError) as info:
        validator.verify_sync(f"Bearer {value}", ["read:members"], organization_id=expected)
    assert info.value.status == outcome
    assert info.value.error == ("insufficient_scope" if outcome == 403 else "invalid_token")


def test_organization_level_api_resource_tokens(validator: BearerValidator, fake: FakeLogto) -> None:
    """Logto's other organization token: the API's `aud` and an `organization_id` claim."""
    scoped = logto_token(fake, API, "read:items", organization_id="org-a")
    assert validator.verify_sync(f"Bearer {scoped}").organization_id == "org-a"
    assert validator.verify_sync(f"Bearer {scoped}", organization_id="org-a").organization_id == "org-a"
    for other in (scoped, logto_token(fake, API, "read:items")):  # another organization's; a global one
        with pytest.raises(BearerError) as info:
            validator.verify_sync(f"Bearer {other}", ["read:items"], organization_id="org-b")
        assert info.value.status == 403
    # An organization token is not a token for the API, whatever organization it is for.
    with pytest.raises(BearerError, match="audience"):
        validator.verify_sync(f"Bearer {logto_token(fake, f'{ORG}org-a')}", organization_id="org-a")


def test_a_cached_verification_is_no_pass_for_another_organization(fake: FakeLogto, clock: Clock) -> None:
    validator = org_validator(fake, clock)
    value = f"Bearer {logto_token(fake, f'{ORG}org-a')}"
    assert validator.verify_sync(value, ["read:members"], organization_id="org-a").organization_id == "org-a"
    assert validator.verify_sync(value).organization_id == "org-a"
    with pytest.raises(BearerError) as info:
        validator.verify_sync(value, ["read:members"], organization_id="org-b")
    assert info.value.status == 403
    assert fake.counts["jwks"] == 1  # the signature was checked once: the cache served the claims


def members_starlette_app(validator: BearerValidator) -> TestClient:
    """org-a's and org-b's members behind each per-endpoint use, on ASGI."""
    from_path: Callable[[Any], str | None] = lambda request: request.path_params["org_id"]  # noqa: E731

    @requires_bearer(validator, "read:members", organization_id=from_path)
    async def members(request: Request) -> JSONResponse:
        return JSONResponse({"org": request.state.access_token_user.organization_id})

    dependency = validator.dependency("read:members", organization_id=from_path)

    async def by_dependency(request: Request) -> JSONResponse:
        return JSONResponse({"org": (await dependency(request)).organization_id})

    @requires_bearer(validator, "read:members", organization_id=lambda request: request.path_params["missing"])
    async def broken(request: Request) -> JSONResponse:
        return JSONResponse({})

    @requires_bearer(validator, "read:members", organization_id="org-a")
    async def fixed(request: Request) -> JSONResponse:
        return JSONResponse({"org": request.state.access_token_user.organization_id})

    app = Starlette(routes=[Route("/orgs/{org_id}/members", members), Route("/dep/{org_id}/members", by_dependency),
                            Route("/broken/{org_id}", broken), Route("/org-a", fixed)])
    return TestClient(app, raise_server_exceptions=False)


def members_flask_app(validator: BearerValidator) -> httpx.Client:
    """The same on WSGI: a Flask view per organization, and one whose callable fails."""
    app = flask.Flask(__name__)

    @app.get("/orgs/<org_id>/members")
    @requires_bearer(validator, "read:members", organization_id=lambda request: request.view_args["org_id"])
    def members(org_id: str) -> Any:
        return {"org": flask.g.access_token_user.organization_id}

    @app.get("/broken/<org_id>")
    @requires_bearer(validator, "read:members", organization_id=lambda request: request.view_args["missing"])
    def broken(org_id: str) -> Any:
        return {}

    @app.get("/org-a")
    @requires_bearer(validator, "read:members", organization_id="org-a")
    def fixed() -> Any:
        return {"org": flask.g.access_token_user.organization_id}

    return httpx.Client(transport=httpx.WSGITransport(app=app.wsgi_app, raise_app_exceptions=False),
                        base_url="http://api.local")


@pytest.mark.parametrize("stack", ["starlette", "flask"])
def test_endpoints_refuse_a_token_for_another_organization(fake: FakeLogto, clock: Clock, stack: str) -> None:
    validator = org_validator(fake, clock)
    client = members_starlette_app(validator) if stack == "starlette" else members_flask_app(validator)
    alice = {"authorization": f"Bearer {logto_token(fake, f'{ORG}org-a')}"}  # a member of org-a
    paths = ["/orgs/{}/members", *(["/dep/{}/members"] if stack == "starlette" else [])]
    for path in paths:
        assert client.get(path.format("org-a"), headers=alice).json() == {"org": "org-a"}, path
        refused = client.get(path.format("org-b"), headers=alice)
        assert refused.status_code == 403, path
        assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
        assert client.get(path.format("org-b")).status_code == 401  # no token: 401 first
    assert client.get("/org-a", headers=alice).json() == {"org": "org-a"}
    other = {"authorization": f"Bearer {logto_token(fake, f'{ORG}org-b')}"}
    assert client.get("/org-a", headers=other).status_code == 403
    # The app's callable fails: the request is refused, not a 500.
    broken = client.get("/broken/org-a", headers=alice)
    assert broken.status_code == 403 and broken.json()["error"] == "insufficient_scope"


def test_middlewares_and_backend_refuse_a_token_for_another_organization(fake: FakeLogto, clock: Clock) -> None:
    validator = org_validator(fake, clock)

    def org_of_path(path: str) -> str:
        return path.split("/")[2]  # /orgs/<id>/...: before routing, there are no path parameters

    async def members(request: Request) -> JSONResponse:
        return JSONResponse({"org": request.user.organization_id})

    def flask_members(org_id: str) -> Any:
        user = flask.request.environ["logto.access_token_user"]
        return {"org": user.organization_id if user else None}

    routes = [Route("/orgs/{org_id}/members", members)]
    asgi = BearerASGIMiddleware(Starlette(routes=routes), validator, required=True,
                                organization_id=lambda conn: org_of_path(conn.url.path))
    backend = Starlette(routes=routes, middleware=[Middleware(
        AuthenticationMiddleware, on_error=BearerAuthBackend.on_error,
        backend=BearerAuthBackend(validator, organization_id=lambda conn: org_of_path(conn.url.path)))])
    flask_app = flask.Flask(__name__)
    flask_app.add_url_rule("/orgs/<org_id>/members", view_func=flask_members)
    wsgi = BearerWSGIMiddleware(flask_app.wsgi_app, validator,
                                organization_id=lambda environ: org_of_path(environ["PATH_INFO"]))
    clients = [TestClient(asgi, raise_server_exceptions=False), TestClient(backend, raise_server_exceptions=False),
               httpx.Client(transport=httpx.WSGITransport(app=wsgi, raise_app_exceptions=False),
                            base_url="http://api.local")]
    alice = {"authorization": f"Bearer {logto_token(fake, f'{ORG}org-a')}"}
    for client in clients:
        assert client.get("/orgs/org-a/members", headers=alice).json() == {"org": "org-a"}
        refused = client.get("/orgs/org-b/members", headers=alice)
        assert refused.status_code == 403 and 'error="insufficient_scope"' in refused.headers["www-authenticate"]
        assert client.get("/short", headers=alice).status_code == 403  # the callable raises: refused


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
