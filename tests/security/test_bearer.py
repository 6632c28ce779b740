"""Bearer tokens at an API: organization confusion, audience confusion, with tokens shaped the way
Logto issues them.

The tokens are not minted here: a user signs in through the middleware (ASGI or WSGI, the `kind`
fixture), and the session gets them from the fake provider's refresh-token grant, as an app would
from Logto. They are then sent to an API on the same stack (Starlette for ASGI, Flask for WSGI).
Logto's two kinds of organization tokens:
- an organization token: `aud` is `urn:logto:organization:<id>`, no `organization_id` claim;
- an organization-level API resource token: the API's `aud` and an `organization_id` claim.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import flask
import httpx
import pytest
from conftest import Clock, Harness
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from logto_middleware import BearerASGIMiddleware, BearerValidator, BearerWSGIMiddleware, requires_bearer
from logto_middleware.testing import FakeLogto

from .security_support import SecretWatch

API = "https://api.example.com"
OTHER_API = "https://other-api.example.com"
ORGANIZATIONS_RESOURCE = "urn:logto:resource:organizations"
SCOPES = "openid offline_access profile urn:logto:scope:organizations read:members read:items"
LOGTO_ACCESS_TOKEN_CLAIMS = {"jti", "sub", "iat", "exp", "scope", "client_id", "iss", "aud"}


@pytest.fixture
def fake(clock: Clock) -> FakeLogto:
    """alice is a member of org-a, bob of org-b; both may read members and items."""
    return FakeLogto(clock=clock, resources={API: ["read:items"], OTHER_API: ["read:items"]},
                     organizations={"alice": ["org-a"], "bob": ["org-b"]}, organization_scopes=["read:members"])


async def asgi_tokens(request: Request) -> JSONResponse:
    params = request.query_params
    return JSONResponse({"token": await request.auth.get_access_token(params.get("resource"), params.get("org"))})


def wsgi_tokens(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    params = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    token = environ["logto.session"].get_access_token(params.get("resource"), params.get("org"))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"token": token}).encode()]


@pytest.fixture
def tokens_of(make_harness: Callable[..., Harness], watch: SecretWatch) -> Callable[[str], Callable[..., str]]:
    """`tokens_of("alice")(resource=..., org=...)`: an access token the signed-in user's session got."""
    def sign_in(user: str) -> Callable[..., str]:
        site = watch.attach(make_harness(resources=[API, OTHER_API, ORGANIZATIONS_RESOURCE], scopes=SCOPES,
                                         asgi_app=Starlette(routes=[Route("/token", asgi_tokens)]),
                                         wsgi_app=wsgi_tokens))
        site.sign_in(user)

        def token(**params: str) -> str:
            response = site.client.get("/token", params=params)
            assert response.status_code == 200, response.text
            return str(response.json()["token"])

        return token
    return sign_in


def claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))  # type: ignore[no-any-return]


def validator(fake: FakeLogto, clock: Clock, **settings: Any) -> BearerValidator:
    return BearerValidator(fake.issuer, http_client=fake.httpx_client(), async_http_client=fake.async_httpx_client(),
                           clock=clock, **settings)


def api(kind: str, checker: BearerValidator, scope: str) -> httpx.Client:
    """`/orgs/<org_id>/members` three ways (the decorator, the FastAPI-style dependency and the
    middleware on ASGI; the decorator and the middleware on WSGI), each expecting the path's
    organization; `/any` accepts a token of any organization (no expected one)."""
    if kind == "asgi":
        @requires_bearer(checker, scope, organization_id=lambda request: request.path_params["org_id"])
        async def members(request: Request) -> JSONResponse:
            return JSONResponse({"org": request.state.access_token_user.organization_id})

        dependency = checker.dependency(scope, organization_id=lambda request: request.path_params["org_id"])

        async def by_dependency(request: Request) -> JSONResponse:
            return JSONResponse({"org": (await dependency(request)).organization_id})

        async def by_middleware(request: Request) -> JSONResponse:
            return JSONResponse({"org": request.user.organization_id})

        @requires_bearer(checker, scope)
        async def any_org(request: Request) -> JSONResponse:
            return JSONResponse({"org": request.state.access_token_user.organization_id})

        inner = BearerASGIMiddleware(Starlette(routes=[Route("/mw/orgs/{org_id}/members", by_middleware)]), checker,
                                     required=True, required_scopes=[scope],
                                     organization_id=lambda conn: conn.url.path.split("/")[3])
        app = Starlette(routes=[Route("/orgs/{org_id}/members", members), Route("/dep/orgs/{org_id}/members",
                                                                                by_dependency),
                                Route("/any", any_org)])

        async def dispatch(scope_: Any, receive: Any, send: Any) -> None:
            path = scope_.get("path", "")
            await (inner if path.startswith("/mw/") else app)(scope_, receive, send)

        return TestClient(dispatch, raise_server_exceptions=False)
    flask_app = flask.Flask(__name__)

    @flask_app.get("/orgs/<org_id>/members")
    @requires_bearer(checker, scope, organization_id=lambda request: request.view_args["org_id"])
    def flask_members(org_id: str) -> Any:
        return {"org": flask.g.access_token_user.organization_id}

    @flask_app.get("/mw/orgs/<org_id>/members")
    def flask_by_middleware(org_id: str) -> Any:
        return {"org": flask.request.environ["logto.access_token_user"].organization_id}

    @flask_app.get("/any")
    @requires_bearer(checker, scope)
    def flask_any() -> Any:
        return {"org": flask.g.access_token_user.organization_id}

    protected = BearerWSGIMiddleware(flask_app.wsgi_app, checker, required=True, required_scopes=[scope],
                                     organization_id=lambda environ: environ["PATH_INFO"].split("/")[3])

    def dispatch_wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        target = protected if environ["PATH_INFO"].startswith("/mw/") else flask_app.wsgi_app
        return target(environ, start_response)

    return httpx.Client(transport=httpx.WSGITransport(app=dispatch_wsgi, raise_app_exceptions=False),
                        base_url="http://api.local")


def org_paths(kind: str, org: str) -> list[str]:
    paths = [f"/orgs/{org}/members", f"/mw/orgs/{org}/members"]
    return [*paths, f"/dep/orgs/{org}/members"] if kind == "asgi" else paths


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_organization_tokens_are_shaped_like_logtos(tokens_of: Callable[[str], Callable[..., str]]) -> None:
    """What the rest of this file relies on: the organization is in `aud`, not in a claim."""
    alice = tokens_of("alice")
    org_token = claims(alice(org="org-a"))
    assert set(org_token) == LOGTO_ACCESS_TOKEN_CLAIMS
    assert org_token["aud"] == "urn:logto:organization:org-a" and org_token["scope"] == "read:members"
    in_org = claims(alice(resource=API, org="org-a"))
    assert set(in_org) == LOGTO_ACCESS_TOKEN_CLAIMS | {"organization_id"}
    assert in_org["aud"] == API and in_org["organization_id"] == "org-a"


def test_a_member_of_org_a_is_refused_on_org_bs_endpoints(kind: str, fake: FakeLogto, clock: Clock,
                                                          tokens_of: Callable[[str], Callable[..., str]]) -> None:
    client = api(kind, validator(fake, clock, organization=True), "read:members")
    alice, bob = tokens_of("alice")(org="org-a"), tokens_of("bob")(org="org-b")
    for path_a, path_b in zip(org_paths(kind, "org-a"), org_paths(kind, "org-b"), strict=True):
        assert client.get(path_a, headers=bearer(alice)).json() == {"org": "org-a"}, path_a
        assert client.get(path_b, headers=bearer(bob)).json() == {"org": "org-b"}, path_b
        for path, token in ((path_b, alice), (path_a, bob)):
            refused = client.get(path, headers=bearer(token))
            assert refused.status_code == 403, path
            assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    # Where the endpoint names no organization, the app is told which one the token is for.
    assert client.get("/any", headers=bearer(alice)).json() == {"org": "org-a"}
    # An id that differs only in its spelling is another organization.
    for path in org_paths(kind, "ORG-A") + org_paths(kind, "org-a%20"):
        assert client.get(path, headers=bearer(alice)).status_code == 403, path


def test_organization_level_api_resource_tokens_stay_in_their_organization(
        kind: str, fake: FakeLogto, clock: Clock, tokens_of: Callable[[str], Callable[..., str]]) -> None:
    client = api(kind, validator(fake, clock, audience=API), "read:items")
    alice = tokens_of("alice")
    in_org_a, global_token = alice(resource=API, org="org-a"), alice(resource=API)
    for path in org_paths(kind, "org-a"):
        assert client.get(path, headers=bearer(in_org_a)).json() == {"org": "org-a"}, path
        assert client.get(path, headers=bearer(global_token)).status_code == 403, path  # no organization
    for path in org_paths(kind, "org-b"):
        assert client.get(path, headers=bearer(in_org_a)).status_code == 403, path
    assert client.get("/any", headers=bearer(global_token)).json() == {"org": None}


def test_audience_confusion_is_refused(kind: str, fake: FakeLogto, clock: Clock,
                                       tokens_of: Callable[[str], Callable[..., str]]) -> None:
    alice = tokens_of("alice")
    for_api, for_other_api, org_token = alice(resource=API), alice(resource=OTHER_API), alice(org="org-a")
    session_token = alice()  # the session's own (opaque, for userinfo)
    api_client = api(kind, validator(fake, clock, audience=API), "read:items")
    org_client = api(kind, validator(fake, clock, organization=True), "read:members")
    assert api_client.get("/any", headers=bearer(for_api)).status_code == 200  # the control
    for token in (for_other_api, org_token, session_token):
        refused = api_client.get("/any", headers=bearer(token))
        assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]
    for token in (for_api, alice(resource=API, org="org-a"), session_token):
        for path in ["/any", *org_paths(kind, "org-a")]:
            refused = org_client.get(path, headers=bearer(token))
            assert refused.status_code == 401, path
            assert 'error="invalid_token"' in refused.headers["www-authenticate"]
