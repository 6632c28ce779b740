"""One provider + example app per server kind, shared by the tests of a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import KINDS, Stack


@pytest.fixture(scope="module", params=KINDS)
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    running = Stack(str(request.param))
    try:
        yield running
    finally:
        running.stop()
