"""Unexpected exceptions (bugs) are logged by where they come from: a bug that every request
meets, or that a client can trigger at will, logs one traceback, not one per request (issue 21,
finding 3 logged 504 lines for 18 requests: each exception was new, with its own message)."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest
from conftest import Clock, Harness

from logto_middleware._core.handler import FailureLog

from .security_support import SecretWatch, cookie_header


def tracebacks(watch: SecretWatch) -> list[logging.LogRecord]:
    return [r for r in watch.errors_logged() if r.exc_info]


def break_the_codec(site: Harness, where: str = "load") -> None:
    """The session codec's `load` raises a new exception, with a new message, on every call."""
    numbers = itertools.count()

    def load(value: str, name: str = "") -> Any:
        raise RuntimeError(f"bug number {next(numbers)} in the codec ({where})")

    sessions = site.middleware.core.manager.sessions
    sessions.cached = lambda value, name="": None  # type: ignore[method-assign]
    sessions.load = load  # type: ignore[method-assign]


def test_a_bug_met_by_every_request_logs_one_traceback(site: Harness, watch: SecretWatch) -> None:
    break_the_codec(site)
    cookie = cookie_header([(site.session_cookie, "x" * 40)])
    for path in ("/", "/api/auth/session", "/x") * 6:
        response = site.client.get(path, headers=cookie)
        assert response.status_code == (500 if path.startswith("/api/auth") else 200)
    [record] = tracebacks(watch)
    assert "failed on GET /" in record.getMessage()
    assert len(watch.errors_logged()) == 1  # and no count line within the window


def test_the_same_bug_after_the_window_logs_one_count_line(site: Harness, watch: SecretWatch) -> None:
    clock = Clock(0.0)
    site.middleware.core.failures = FailureLog(logging.getLogger("logto_middleware"), window=60, clock=clock)
    break_the_codec(site)
    cookie = cookie_header([(site.session_cookie, "x" * 40)])
    for _ in range(5):
        site.client.get("/", headers=cookie)
    clock.advance(61)
    site.client.get("/", headers=cookie)
    site.client.get("/", headers=cookie)
    first, count = watch.errors_logged()
    assert first.exc_info and not count.exc_info
    assert "RuntimeError" in count.getMessage() and "5 times" in count.getMessage()


@pytest.mark.modes("logto", reason="a unit check of the key: the session mode plays no part")
def test_bugs_of_two_sites_log_two_tracebacks(site: Harness, watch: SecretWatch) -> None:
    failures = site.middleware.core.failures

    def one() -> None:
        raise ValueError("same message")

    def other() -> None:
        raise ValueError("same message")

    for bug in (one, other, one, other):
        try:
            bug()
        except ValueError as exc:
            failures.report(exc, "GET", "/")
    assert len(tracebacks(watch)) == 2
