"""Cookie sessions coordinated across hosts by Redis (`AUTH_REFRESH_LOCK=redis://...`): several
middlewares, each with its own Redis client (a process on another host), on one FakeLogto that
rotates the refresh token on every use and revokes the grant on reuse."""

from __future__ import annotations

import pytest
from conftest import Clock
from redis_support import deployment_url
from test_coordination import WORKERS, burst, newest_cookie, request_as, signed_in_cookie, workers

from logto_middleware.testing import FakeLogto


@pytest.fixture
def fake(clock: Clock) -> FakeLogto:
    return FakeLogto(clock=clock, rotate_refresh_token="always")


@pytest.mark.parametrize("deployment", ["standalone", "cluster", "sentinel", "tls"])
def test_redis_lock_sends_one_grant_per_burst(request: pytest.FixtureRequest, kind: str, fake: FakeLogto,
                                              clock: Clock, deployment: str) -> None:
    """AUTH_REFRESH_LOCK on every kind of Redis deployment."""
    pool = workers(kind, fake, clock, deployment_url(request, deployment))
    name, cookie = signed_in_cookie(pool[0])
    for round_ in range(2):
        clock.advance(fake.access_token_ttl - 30)
        results = burst(pool, name, cookie, 4 * WORKERS)
        assert all(r["authenticated"] and r["error"] is None for r in results), results
        assert len({r["access_token"] for r in results}) == 1
        assert fake.counts["token:refresh_token"] == round_ + 1
        cookie = newest_cookie(pool[1], name, cookie)
    # A request moments later with a cookie from before the last refresh, on yet another host.
    assert request_as(pool[2], name, cookie)["authenticated"]
