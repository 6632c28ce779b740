"""The Django middleware under Django's own test client (sync and async), against FakeLogto."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import AsyncClient, Client
from django.test.utils import override_settings

from logto_middleware.django.testing import sign_in
from logto_middleware.testing import FakeLogto


def full_sign_in(client: Client, fake: FakeLogto, path: str = "/api/auth/signin", login: str = "alice") -> Any:
    start = client.get(path)
    assert start.status_code == 302, start.content
    callback = fake.authorize(start["Location"], login=login)
    return client.get(callback)


def test_signin_route_is_served_inside_django(logto_without_auth: dict[str, Any], fake: FakeLogto) -> None:
    # Today: Django's test client bypasses the WSGI wrapper, so this is Django's 404.
    client = Client()
    start = client.get("/api/auth/signin")
    assert start.status_code == 302
    assert start["Location"].startswith(fake.issuer)
    query = parse_qs(urlsplit(start["Location"]).query)
    assert query["redirect_uri"] == ["http://testserver/api/auth/callback/logto"]
    done = full_sign_in(Client(), fake)
    assert done.status_code == 302


def test_login_required_without_contrib_auth(logto_without_auth: dict[str, Any], fake: FakeLogto) -> None:
    # Today: Django's `login_required` is a 500 ('WSGIRequest' object has no attribute 'user').
    client = Client()
    sign_in(client, claims={"sub": "no-auth-user"})
    answer = client.get("/protected").json()
    assert answer["authenticated"] and answer["type"] == "LogtoUser" and answer["session"]
    # Anonymous, Django's own decorator imports the auth views (the User model) to redirect; ours
    # needs no contrib.auth: a page goes to sign-in and back, an API gets a 401.
    client = Client()
    assert client.get("/page", HTTP_ACCEPT="application/json").status_code == 401
    anonymous = client.get("/page")
    assert anonymous.status_code == 302
    assert anonymous["Location"] == "/api/auth/signin?callbackUrl=%2Fpage"
    callback = full_sign_in(client, fake, anonymous["Location"])
    assert callback["Location"] == "http://testserver/page"
    assert client.get("/page").json()["logto_id"]


def test_next_is_an_alias_of_callback_url_with_the_same_origin_rules(
        logto_without_auth: dict[str, Any], fake: FakeLogto) -> None:
    for target, expected in (("/somewhere?x=1", "http://testserver/somewhere?x=1"),
                             ("https://evil.example/", "http://testserver/"),
                             ("//evil.example/", "http://testserver/")):
        client = Client()
        callback = full_sign_in(client, fake, "/api/auth/signin?next=" + target.replace("?", "%3F").replace(
            "&", "%26"))
        assert callback["Location"] == expected, target


def test_login_required_with_contrib_auth_links_a_user(logto: dict[str, Any], fake: FakeLogto) -> None:
    from django.contrib.auth import get_user_model

    from logto_middleware.django.models import LogtoIdentity

    client = Client()
    assert client.get("/protected")["Location"] == "/api/auth/signin?next=/protected"
    callback = full_sign_in(client, fake, "/api/auth/signin?next=/protected")
    assert callback["Location"] == "http://testserver/protected"
    # Today: a signed-in Logto user is sent to /accounts/login/.
    answer = client.get("/protected").json()
    assert answer["authenticated"] and answer["type"] == "User" and answer["session"]
    identity = LogtoIdentity.objects.get()
    assert identity.issuer == fake.issuer and answer["id"] == str(identity.user_id)
    user = get_user_model().objects.get(pk=identity.user_id)
    assert user.username == f"logto-{identity.sub}" and not user.has_usable_password()


def test_user_is_created_by_sub_and_updated_never_matched_by_email(logto: dict[str, Any]) -> None:
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    local = users.create_user("mallory", email="same@example.com")
    client = Client()
    sign_in(client, claims={"sub": "sub-1", "email": "same@example.com", "name": "Ann Lee"})
    first = client.get("/").json()
    assert first["authenticated"] and first["id"] != str(local.pk)
    user = users.get(pk=int(first["id"]))
    assert (user.email, user.first_name, user.last_name) == ("same@example.com", "Ann", "Lee")
    sign_in(client, claims={"sub": "sub-1", "email": "new@example.com", "name": "Ann Smith"})
    second = client.get("/").json()
    assert second["id"] == first["id"]
    user.refresh_from_db()
    assert (user.email, user.last_name) == ("new@example.com", "Smith")
    assert users.count() == 2


def test_create_user_is_overridable_and_fails_closed(logto: dict[str, Any]) -> None:
    from django.contrib.auth import get_user_model

    with override_settings(AUTHENTICATION_BACKENDS=["django_integration.backends.StaffBackend"]):
        client = Client()
        sign_in(client, claims={"sub": "sub-staff"})
        assert client.get("/").json()["username"] == "staff-sub-staff"
        assert get_user_model().objects.get(username="staff-sub-staff").is_staff
    with override_settings(AUTHENTICATION_BACKENDS=["django_integration.backends.BrokenBackend"]):
        client = Client()
        sign_in(client, claims={"sub": "sub-broken"})
        answer = client.get("/")
        assert answer.status_code == 200 and not answer.json()["authenticated"]


def test_permission_check_on_the_linked_user(logto: dict[str, Any]) -> None:
    from django.contrib.auth.models import Permission

    from logto_middleware.django.models import LogtoIdentity

    client = Client()
    sign_in(client, claims={"sub": "sub-perm"})
    assert client.get("/staff").status_code == 403
    user = LogtoIdentity.objects.get(sub="sub-perm").user
    user.user_permissions.add(Permission.objects.get(codename="view_user"))
    assert client.get("/staff").status_code == 200


def test_get_access_token_sync_and_async(logto: dict[str, Any], fake: FakeLogto) -> None:
    client = Client()
    full_sign_in(client, fake)
    token = client.get("/token").json()["token"]
    assert isinstance(token, str) and token

    async def run() -> dict[str, Any]:
        async_client = AsyncClient()
        async_client.cookies = client.cookies
        response = await async_client.get("/async-token")
        assert response.status_code == 200, response.content
        return dict(response.json())

    from asgiref.sync import async_to_sync

    answer = async_to_sync(run)()
    assert answer == {"token": token, "authenticated": True}
    # An async view under the sync chain (WSGI): the awaitable crosses over to the sync driver.
    assert client.get("/async-token").json() == {"token": token, "authenticated": True}


def test_sign_in_helper_and_anonymous(logto_without_auth: dict[str, Any]) -> None:
    client = Client()
    assert client.get("/").json()["authenticated"] is False
    sign_in(client, claims={"sub": "helper-user"})
    answer = client.get("/").json()
    assert answer["authenticated"] and answer["logto_id"] == "helper-user"


@pytest.mark.parametrize("prefix", ["/app"])
def test_force_script_name(logto_without_auth: dict[str, Any], fake: FakeLogto, prefix: str) -> None:
    with override_settings(FORCE_SCRIPT_NAME=prefix):
        client = Client()
        anonymous = client.get("/page")
        assert anonymous["Location"] == f"{prefix}/api/auth/signin?callbackUrl=%2Fapp%2Fpage"
        start = client.get("/api/auth/signin", {"next": f"{prefix}/protected"})
        query = parse_qs(urlsplit(start["Location"]).query)
        assert query["redirect_uri"] == [f"http://testserver{prefix}/api/auth/callback/logto"]
        callback = client.get(fake.authorize(start["Location"], login="alice").replace(prefix, "", 1))
        assert callback["Location"] == f"http://testserver{prefix}/protected"
        assert client.get("/page").json()["authenticated"]


def test_oversized_post_and_sign_out(logto_without_auth: dict[str, Any]) -> None:
    client = Client()
    big = client.post("/api/auth/signout", data=b"x" * (65 * 1024), content_type="application/x-www-form-urlencoded")
    assert big.status_code == 413
    sign_in(client, claims={"sub": "leaving"})
    out = client.post("/api/auth/signout", HTTP_ORIGIN="http://testserver")
    assert out.status_code == 302
    assert client.get("/").json()["authenticated"] is False


def test_migrations_match_the_model(logto: dict[str, Any]) -> None:
    from django.core.management import call_command

    call_command("makemigrations", "logto", "--check", "--dry-run", verbosity=0)


def test_authentication_middleware_after_ours_is_refused(logto: dict[str, Any]) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from . import settings as test_settings

    with override_settings(MIDDLEWARE=list(reversed(test_settings.WITH_AUTH_MIDDLEWARE))), \
            pytest.raises(ImproperlyConfigured, match="must come after"):
        Client().get("/")


@pytest.mark.parametrize("with_auth", [False, True])
def test_requires_fresh_auth(request: pytest.FixtureRequest, fake: FakeLogto, clock: Any, with_auth: bool) -> None:
    request.getfixturevalue("logto" if with_auth else "logto_without_auth")
    client = Client()
    assert client.get("/fresh", HTTP_ACCEPT="application/json").status_code == 401  # anonymous
    full_sign_in(client, fake)
    assert client.get("/fresh").json()["authenticated"] is True
    clock.advance(300 + 60 + 1)  # max_age and the clock skew
    page = client.get("/fresh?x=1")
    assert page.status_code == 303
    assert page["Location"] == "/api/auth/signin?callbackUrl=%2Ffresh%3Fx%3D1&max_age=300"
    api = client.get("/fresh", HTTP_ACCEPT="application/json")
    assert api.status_code == 401
    assert 'error="insufficient_user_authentication"' in api["WWW-Authenticate"]
    assert api.json()["max_age"] == 300

    async def run() -> int:
        async_client = AsyncClient()
        async_client.cookies = client.cookies
        return (await async_client.get("/async-fresh", headers={"accept": "application/json"})).status_code

    from asgiref.sync import async_to_sync

    assert async_to_sync(run)() == 401
    callback = full_sign_in(client, fake, page["Location"])  # max_age reaches Logto; back to the page
    assert callback["Location"] == "http://testserver/fresh?x=1"
    assert client.get("/fresh").json()["authenticated"] is True
    assert async_to_sync(run)() == 200
