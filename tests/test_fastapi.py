"""FastAPI and Starlette integration: the dependencies of `logto_middleware.fastapi`, the
OpenAPI security scheme, `login_required`, the anonymous `request.auth`, and a sign-in route that
Starlette's `@requires(..., redirect=...)` can name. ASGI only: FastAPI and Starlette are ASGI."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import Clock, Harness
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from logto_middleware import AccessTokenError, LogtoUser
from logto_middleware.fastapi import (
    CurrentCaller,
    CurrentSession,
    CurrentUser,
    FreshAuth,
    LoginRequired,
    OptionalCaller,
    OptionalUser,
    access_token,
    requires_fresh_auth,
    requires_scopes,
)
from logto_middleware.starlette import signin_route
from logto_middleware.testing import FakeLogto

API = "https://api.example.com"
OTHER = "https://other.example.com"  # not a resource of the app
ORGS = "urn:logto:scope:organizations"
SCOPES = "openid offline_access profile email read:items"


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, Any]:
        return user.to_dict()

    @app.get("/maybe")
    async def maybe(user: OptionalUser) -> dict[str, Any]:
        return {"id": user.id if user else None}

    @app.get("/caller")
    async def caller(caller: CurrentCaller) -> dict[str, Any]:
        return {**caller.to_dict(), "source": caller.source}

    @app.get("/maybe-caller")
    async def maybe_caller(caller: OptionalCaller) -> dict[str, Any]:
        return {"id": caller.id if caller else None}

    @app.get("/session")
    async def session(session: CurrentSession) -> dict[str, Any]:
        return {"scopes": session.scopes}

    @app.get("/items")
    async def items(user: Annotated[LogtoUser, Depends(requires_scopes("read:items", resource=API))]) -> dict[str, Any]:
        return {"id": user.id}

    @app.get("/admin")
    async def admin(user: Annotated[LogtoUser, Depends(requires_scopes("write:items", resource=API))]) -> Any:
        return {"id": user.id}

    @app.get("/email")
    async def email(user: Annotated[LogtoUser, Depends(requires_scopes("email"))]) -> dict[str, Any]:
        return {"id": user.id}

    @app.get("/orgs")
    async def orgs(user: Annotated[LogtoUser, Depends(requires_scopes(ORGS))]) -> dict[str, Any]:
        return {"id": user.id}

    @app.get("/token")
    async def token(value: Annotated[str, Depends(access_token(API))]) -> dict[str, Any]:
        return {"token": value}

    @app.get("/profile", response_class=HTMLResponse)
    async def profile(user: LoginRequired) -> str:
        return f"<p>{user.id}</p>"

    @app.get("/delete")
    async def delete(user: Annotated[LogtoUser, Depends(FreshAuth(max_age=300))]) -> dict[str, Any]:
        return {"deleted": user.id}

    @app.get("/export", dependencies=[Depends(requires_fresh_auth(60))])
    async def export() -> dict[str, Any]:
        return {"exported": True}

    @app.get("/raw")
    async def raw(request: Request) -> dict[str, Any]:
        # What docs/logto-features.md shows: `await request.auth.get_access_token(...)`.
        try:
            return {"token": await request.auth.get_access_token(API)}
        except AccessTokenError as exc:
            return {"error": str(exc)}

    return app


@pytest.fixture
def site(fake_with_api: FakeLogto, clock: Clock) -> Harness:
    return Harness("asgi", fake_with_api, clock, resources=[API], scopes=SCOPES, asgi_app=fastapi_app())


@pytest.fixture
def fake_with_api(clock: Clock) -> FakeLogto:
    return FakeLogto(clock=clock, resources={API: ["read:items", "write:items"]})


def test_anonymous_request_auth_get_access_token_raises_access_token_error(site: Harness) -> None:
    # Before: the anonymous `request.auth` was a bare AuthCredentials: AttributeError, a 500.
    response = site.client.get("/raw")
    assert response.status_code == 200, response.text
    assert response.json() == {"error": "not signed in"}


def test_current_user_and_optional_user(site: Harness) -> None:
    assert site.client.get("/me").status_code == 401
    assert site.client.get("/me").json() == {"detail": "unauthorized"}
    assert site.client.get("/session").status_code == 401
    assert site.client.get("/maybe").json() == {"id": None}
    site.sign_in("alice")
    me = site.client.get("/me").json()
    assert me["id"] and me["email"] == "alice@example.com"
    assert site.client.get("/maybe").json() == {"id": me["id"]}
    assert "email" in site.client.get("/session").json()["scopes"]


def test_requires_scopes(site: Harness) -> None:
    assert site.client.get("/items").status_code == 401
    site.sign_in("alice")
    assert site.client.get("/items").json() == {"id": site.client.get("/me").json()["id"]}
    denied = site.client.get("/admin")  # write:items exists on the API but was not requested
    assert denied.status_code == 403 and denied.json() == {"detail": "missing scope: write:items"}
    assert site.client.get("/email").status_code == 200  # the session's own scopes
    denied = site.client.get("/orgs")
    assert denied.status_code == 403 and denied.json() == {"detail": "missing scope: urn:logto:scope:organizations"}


def test_access_token_dependency(site: Harness) -> None:
    assert site.client.get("/token").status_code == 401
    site.sign_in("alice")
    token = site.client.get("/token")
    assert token.status_code == 200, token.text
    assert token.json()["token"].count(".") == 2


def test_access_token_dependency_provider_down_is_503(site: Harness, clock: Clock) -> None:
    site.sign_in("alice")
    site.fake.outage.add("token")
    response = site.client.get("/token")
    assert response.status_code == 503, response.text
    assert response.json() == {"detail": "the sign-in provider is unavailable"}
    site.fake.outage.clear()
    clock.advance(60)  # past the back-off after a failed grant
    assert site.client.get("/token").status_code == 200
    assert site.client.get("/me").status_code == 200  # the session was not lost


def test_access_token_dependency_not_granted_is_401(fake_with_api: FakeLogto, clock: Clock) -> None:
    app = FastAPI()

    @app.get("/other")
    async def other_token(value: Annotated[str, Depends(access_token(OTHER))]) -> dict[str, str]:
        return {"token": value}

    site = Harness("asgi", fake_with_api, clock, resources=[API], scopes=SCOPES, asgi_app=app)
    site.sign_in("alice")
    response = site.client.get("/other")
    assert response.status_code == 401, response.text
    assert response.json()["detail"].startswith("no access token")


def test_login_required_redirects_pages_and_answers_apis_401(site: Harness) -> None:
    page = site.client.get("/profile?tab=keys", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 303
    location = urlsplit(page.headers["location"])
    assert location.path == "/api/auth/signin"
    assert parse_qs(location.query) == {"callbackUrl": ["/profile?tab=keys"]}
    api = site.client.get("/profile", headers={"Accept": "application/json"})
    assert api.status_code == 401 and api.json() == {"detail": "unauthorized"}
    landed = site.sign_in("alice", callbackUrl="/profile?tab=keys")
    assert landed.headers["location"].endswith("/profile?tab=keys")
    user_id = site.client.get("/me").json()["id"]
    assert site.client.get("/profile").text == f"<p>{user_id}</p>"


def test_login_required_follows_the_base_path(fake: FakeLogto, clock: Clock) -> None:
    site = Harness("asgi", fake, clock, base_path="/auth", asgi_app=fastapi_app())
    page = site.client.get("/profile", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/auth/signin?callbackUrl=%2Fprofile"


def test_openapi_document_has_the_cookie_security_scheme(site: Harness) -> None:
    document = site.client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["LogtoSession"] == {
        "type": "apiKey", "in": "cookie", "name": "logto.session-token",
        "description": "The Logto session cookie: sign in at /api/auth/signin in this browser, then call the API."}
    for path in ("/me", "/maybe", "/session", "/items", "/token", "/profile"):
        assert document["paths"][path]["get"]["security"] == [{"LogtoSession": []}], path
    assert "security" not in document["paths"]["/raw"]["get"]
    # The scheme names the cookie the middleware really reads.
    site.sign_in("alice")
    assert "logto.session-token" in site.client.cookies


def test_starlette_requires_redirect_reaches_sign_in(fake: FakeLogto, clock: Clock) -> None:
    @requires("authenticated", redirect="signin")
    async def profile(request: Any) -> PlainTextResponse:
        return PlainTextResponse(request.user.email)

    async def home(request: Any) -> JSONResponse:
        return JSONResponse({})

    app = Starlette(routes=[signin_route(), Route("/profile", profile), Route("/", home)])
    site = Harness("asgi", fake, clock, asgi_app=app)
    first = site.client.get("/profile?tab=1")
    assert first.status_code == 303
    # Starlette's own redirect: to the named route with ?next=<this URL>.
    login = site.client.get(first.headers["location"])
    assert login.status_code == 303
    start = site.client.get(login.headers["location"])
    assert start.status_code == 302, start.text
    callback = site.fake.authorize(start.headers["location"], login="alice")
    landed = site.client.get(callback)
    assert landed.status_code == 302
    assert landed.headers["location"] in ("http://localhost:3000/profile?tab=1", "/profile?tab=1")
    assert site.client.get("/profile?tab=1").text == "alice@example.com"


def test_signin_redirect_does_not_send_a_visitor_elsewhere(fake: FakeLogto, clock: Clock) -> None:
    app = Starlette(routes=[signin_route()])
    site = Harness("asgi", fake, clock, asgi_app=app)
    start = site.client.get(site.client.get("/login?next=https://evil.example/x").headers["location"])
    callback = site.fake.authorize(start.headers["location"], login="alice")
    landed = site.client.get(callback).headers["location"]
    assert "evil.example" not in landed


def test_fresh_auth_dependency(site: Harness) -> None:
    assert site.client.get("/delete").status_code == 401  # anonymous
    site.sign_in("alice")
    user_id = site.client.get("/me").json()["id"]
    assert site.client.get("/delete").json() == {"deleted": user_id}
    site.clock.advance(300 + 60 + 1)  # max_age and the clock skew
    page = site.client.get("/delete?confirm=1", headers={"Accept": "text/html"})
    assert page.status_code == 303
    location = urlsplit(page.headers["location"])
    assert location.path == "/api/auth/signin"
    assert parse_qs(location.query) == {"callbackUrl": ["/delete?confirm=1"], "max_age": ["300"]}
    api = site.client.get("/delete", headers={"Accept": "application/json"})
    assert api.status_code == 401
    assert api.headers["www-authenticate"] == (
        'Cookie error="insufficient_user_authentication", '
        'error_description="A more recent sign-in is required", max_age="300"')
    assert api.json()["detail"]["error"] == "insufficient_user_authentication"
    # Following the page's redirect signs in again (max_age reaches Logto) and comes back.
    start = site.client.get(page.headers["location"])
    assert parse_qs(urlsplit(start.headers["location"]).query)["max_age"] == ["300"]
    back = site.client.get(site.fake.authorize(start.headers["location"], login="alice"))
    assert back.headers["location"].endswith("/delete?confirm=1")
    assert site.client.get("/delete").json() == {"deleted": user_id}


def test_requires_fresh_auth_in_dependencies(site: Harness) -> None:
    site.sign_in("alice")
    assert site.client.get("/export").json() == {"exported": True}
    site.clock.advance(60 + 60 + 1)
    refused = site.client.get("/export")
    assert refused.status_code == 401 and 'max_age="60"' in refused.headers["www-authenticate"]
    assert site.client.get("/delete").status_code == 200  # 300 s is not over yet


def test_fresh_auth_follows_the_base_path_of_a_signed_in_session(fake: FakeLogto, clock: Clock) -> None:
    site = Harness("asgi", fake, clock, base_path="/auth", asgi_app=fastapi_app())
    start = site.client.get("/auth/signin")
    site.client.get(fake.authorize(start.headers["location"], login="alice"))
    clock.advance(1000)
    page = site.client.get("/delete", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/auth/signin?callbackUrl=%2Fdelete&max_age=300"


def test_guards_follow_the_root_path(fake: FakeLogto, clock: Clock) -> None:
    """Behind `uvicorn --root-path /app`: both the anonymous and the stale signed-in redirect
    go to the sign-in under the prefix, where the middleware serves it."""
    site = Harness("asgi", fake, clock, asgi_app=fastapi_app())
    site.client = TestClient(site.middleware, base_url="http://localhost:8000", root_path="/app",
                             follow_redirects=False)
    page = {"Accept": "text/html"}
    anonymous = site.client.get("/app/profile", headers=page)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/app/api/auth/signin?callbackUrl=%2Fapp%2Fprofile"
    start = site.client.get("/app/api/auth/signin")
    site.client.get(fake.authorize(start.headers["location"], login="alice"))
    assert site.client.get("/app/me").json()["name"] == "Alice"
    clock.advance(1000)
    stale = site.client.get("/app/delete", headers=page)
    assert stale.status_code == 303
    assert stale.headers["location"] == "/app/api/auth/signin?callbackUrl=%2Fapp%2Fdelete&max_age=300"


def test_fresh_auth_is_in_the_openapi_document(site: Harness) -> None:
    document = site.client.get("/openapi.json").json()
    for path in ("/delete", "/export"):
        assert document["paths"][path]["get"]["security"] == [{"LogtoSession": []}], path


def api_token(fake: FakeLogto, clock: Clock, **overrides: Any) -> str:
    now = int(clock())
    claims = {"iss": fake.issuer, "sub": "machine-1", "aud": API, "exp": now + 3600, "iat": now,
              "client_id": "m2m", "scope": "read:items", **overrides}
    return fake.sign_id_token(claims, headers={"typ": "at+jwt"})


def test_dependencies_with_a_bearer_token_or_a_session(fake_with_api: FakeLogto, clock: Clock) -> None:
    from logto_middleware import BearerValidator

    validator = BearerValidator(fake_with_api.issuer, API, clock=clock)
    site = Harness("asgi", fake_with_api, clock, resources=[API], scopes=SCOPES, asgi_app=fastapi_app(),
                   bearer=validator)
    token = {"authorization": f"Bearer {api_token(fake_with_api, clock)}"}
    me = site.client.get("/caller", headers=token)
    assert me.status_code == 200
    assert me.json() == {"id": "machine-1", "name": None, "email": None, "image": None, "source": "bearer"}
    assert site.client.get("/maybe-caller", headers=token).json() == {"id": "machine-1"}
    # The user dependencies are the signed-in person: a token's request has none.
    assert site.client.get("/me", headers=token).status_code == 401
    assert site.client.get("/maybe", headers=token).json() == {"id": None}
    assert site.client.get("/profile", headers=token).status_code == 401
    # The token's own scopes: read:items granted, write:items not; a session-only scope neither.
    assert site.client.get("/items", headers=token).json() == {"id": "machine-1"}
    assert site.client.get("/admin", headers=token).status_code == 403
    assert site.client.get("/email", headers=token).status_code == 403
    # No session behind a token: what needs one is a 401, and `request.auth` answers AccessTokenError.
    assert site.client.get("/session", headers=token).status_code == 401
    assert site.client.get("/token", headers=token).status_code == 401
    assert site.client.get("/raw", headers=token).json() == {
        "error": "a request authenticated by a bearer token has no session"}
    # A token for another API does not carry this API's permissions.
    elsewhere = BearerValidator(fake_with_api.issuer, OTHER, clock=clock)
    other_site = Harness("asgi", fake_with_api, clock, resources=[API], asgi_app=fastapi_app(), bearer=elsewhere)
    foreign = {"authorization": f"Bearer {api_token(fake_with_api, clock, aud=OTHER)}"}
    assert other_site.client.get("/caller", headers=foreign).status_code == 200
    assert other_site.client.get("/items", headers=foreign).status_code == 403
    # The session's user, on the same app.
    site.sign_in("alice")
    assert site.client.get("/items").status_code == 200
    assert site.client.get("/me").json()["email"] == "alice@example.com"
    assert site.client.get("/caller").json()["source"] == "session"
