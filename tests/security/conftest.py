"""Fixtures of the security suite: every test runs in every session mode (see `Mode`), behind
both middlewares, with a watch on the logs for secrets.

`harness` and `make_harness` are overridden here to build the harness of the test's `mode`, so a
test that asks for either (or for `site`) runs once per mode. A test that only makes sense in
some modes says so with `@pytest.mark.modes("logto", ..., reason=...)`: the other modes'
instances are deselected (and counted as such), never skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock, Harness

from logto_middleware.testing import FakeLogto

from .security_support import MODES, Mode, SecretWatch

_HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "modes(*names, reason): the session modes a security test is meaningful in; its instances "
                   "in the other modes are deselected")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("modes")
        callspec = getattr(item, "callspec", None)
        mode = callspec.params.get("mode") if callspec is not None else None
        if marker is not None and _HERE in item.path.parents:
            assert marker.kwargs.get("reason"), f"{item.nodeid}: a modes(...) marker needs a reason"
            assert set(marker.args) <= set(MODES), marker.args
            assert mode is not None, f"{item.nodeid}: marked modes(...) but runs in no mode (no harness)"
            if mode not in marker.args:
                dropped.append(item)
                continue
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> Mode:
    """The session mode of this test instance; the redis mode empties the shared redis-server."""
    name = str(request.param)
    return Mode(name, request.getfixturevalue("redis_url") if name == "redis" else None)


@pytest.fixture
def harness(kind: str, fake: FakeLogto, clock: Clock, mode: Mode) -> Harness:
    return Harness(kind, fake, clock, **mode.settings())


@pytest.fixture
def make_harness(kind: str, fake: FakeLogto, clock: Clock, mode: Mode) -> Callable[..., Harness]:
    """A harness of the test's mode; `settings` add to (or override) the mode's, and `provider`
    puts another provider (e.g. a `RoutedFake`) in place of the fake."""
    def make(provider: Any = None, **settings: Any) -> Harness:
        return Harness(kind, fake if provider is None else provider, clock, **{**mode.settings(), **settings})
    return make


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
