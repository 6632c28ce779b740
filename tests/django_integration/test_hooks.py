"""`LogtoHooks` named in Django's `LOGTO` settings by a dotted path (issue 22)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.test.utils import override_settings

from logto_middleware import LogtoConfigError, LogtoHooks, LogtoUser
from logto_middleware.django.conf import options_from_settings
from logto_middleware.testing import FakeLogto

from .test_middleware import full_sign_in


class RoleHooks(LogtoHooks):
    def sign_in(self, user: LogtoUser, tokens: Mapping[str, Any]) -> bool | str:
        return user.claims.get("username") != "mallory"

    def session_data(self, fields: dict[str, Any], user: LogtoUser, trigger: str,
                     tokens: Mapping[str, Any]) -> Mapping[str, Any]:
        return {"roles": ["editor"]}

    def session(self, session: dict[str, Any], user: LogtoUser) -> Mapping[str, Any]:
        return {**session, "roles": user.fields["roles"]}


class AsyncRoleHooks(LogtoHooks):
    async def sign_in(self, user: LogtoUser, tokens: Mapping[str, Any]) -> bool | str:  # type: ignore[override]
        return True


@pytest.mark.parametrize("hooks", [f"{__name__}.RoleHooks", RoleHooks, RoleHooks()], ids=["path", "class", "object"])
def test_hooks_from_settings(logto_without_auth: dict[str, Any], fake: FakeLogto, hooks: Any) -> None:
    with override_settings(LOGTO={**logto_without_auth, "hooks": hooks}):
        assert isinstance(options_from_settings().config.hooks, RoleHooks)
        refused = full_sign_in(Client(), fake, login="mallory")
        assert refused["Location"].endswith("/api/auth/error?error=AccessDenied")
        client = Client()
        full_sign_in(client, fake)
        assert client.get("/api/auth/session").json()["roles"] == ["editor"]


def test_async_hooks_under_a_sync_django_are_refused_at_start(logto_without_auth: dict[str, Any]) -> None:
    with (override_settings(LOGTO={**logto_without_auth, "hooks": AsyncRoleHooks}),
          pytest.raises((LogtoConfigError, ImproperlyConfigured), match="coroutine functions")):
        Client().get("/")
