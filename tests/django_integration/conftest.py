"""Django, configured once for this folder only (`settings.configure`, no pytest-django), and a
`LOGTO` setting per test pointing the middleware at the FakeLogto of that test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.conf import settings
from django.test.utils import override_settings

from logto_middleware.testing import FakeLogto

from . import settings as test_settings

if not settings.configured:
    settings.configure(**test_settings.BASE)
    django.setup()


@pytest.fixture(scope="session")
def django_db_schema() -> None:
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)


@pytest.fixture
def db(django_db_schema: None) -> Iterator[None]:
    """Each test in a transaction rolled back at its end."""
    from django.db import transaction

    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def logto_settings(fake: FakeLogto, clock: Any, **extra: Any) -> dict[str, Any]:
    return {"issuer": fake.issuer, "client_id": fake.client_id, "client_secret": fake.client_secret,
            "secret": test_settings.SECRET, "http_client": fake.httpx_client(),
            "async_http_client": fake.async_httpx_client(), "clock": clock, **extra}


@pytest.fixture
def logto(fake: FakeLogto, clock: Any, db: None) -> Iterator[dict[str, Any]]:
    """The project with contrib.auth (the User link) and the middleware on FakeLogto."""
    value = logto_settings(fake, clock)
    with override_settings(LOGTO=value):
        yield value


@pytest.fixture
def logto_without_auth(fake: FakeLogto, clock: Any) -> Iterator[dict[str, Any]]:
    """A project without django.contrib.auth: `request.user` is the LogtoUser."""
    value = logto_settings(fake, clock)
    with override_settings(LOGTO=value, INSTALLED_APPS=test_settings.WITHOUT_AUTH_APPS,
                           MIDDLEWARE=test_settings.WITHOUT_AUTH_MIDDLEWARE, AUTHENTICATION_BACKENDS=[]):
        yield value
