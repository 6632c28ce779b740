"""Fixtures of the security suite: every test runs with a watch on the logs for secrets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import Harness

from .security_support import SecretWatch


@pytest.fixture
def watch(caplog: pytest.LogCaptureFixture) -> Iterator[SecretWatch]:
    """Collects every secret the test makes; fails at teardown if one reached a log record."""
    w = SecretWatch(caplog)
    yield w
    w.assert_logs_clean()


@pytest.fixture
def site(harness: Harness, watch: SecretWatch) -> Harness:
    """The harness (ASGI or WSGI), watched."""
    return watch.attach(harness)
