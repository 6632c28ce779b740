"""The app's own code (the profile mapper) runs under the fail-closed rule: when it raises or
answers nonsense, the sign-in ends on the error page and a session it can no longer map is
cleared; never a 500, never a session that keeps failing, and one log record per bug."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest
from conftest import Harness

from .security_support import SecretWatch, assert_rejected_callback, deleted_names, session_written

API_SESSION = "/api/auth/session"


class Mapper:
    """A profile mapper that can be switched to fail: by raising, or by answering a non-mapping."""

    def __init__(self) -> None:
        self.failure: str | None = None
        self.calls = 0

    def __call__(self, claims: Mapping[str, Any]) -> Any:
        self.calls += 1
        if self.failure == "raises":
            raise KeyError("tenant")  # e.g. a claim the mapper expects and the token lacks
        if self.failure == "not-a-mapping":
            return None
        return {"id": claims["sub"], "name": "Mapped " + str(claims.get("name"))}


FAILURES = ["raises", "not-a-mapping"]


def mapped_site(make_harness: Any, watch: SecretWatch) -> tuple[Harness, Mapper]:
    mapper = Mapper()
    return watch.attach(make_harness(profile=mapper)), mapper


def failure_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("failure", FAILURES)
def test_mapper_failing_at_sign_in_ends_the_sign_in_on_the_error_page(
        make_harness: Any, watch: SecretWatch, failure: str) -> None:
    site, mapper = mapped_site(make_harness, watch)
    mapper.failure = failure
    response = site.sign_in()
    assert_rejected_callback(site, response, "Configuration")
    assert site.client.get(API_SESSION).json() is None


def new_release(make_harness: Any, watch: SecretWatch, signed_in: Harness, failure: str) -> Harness:
    """The same app restarted with a mapper that fails (a new release with a bug, or a claim the
    mapper now expects), its browser carrying the session made by the previous release."""
    mapper = Mapper()
    mapper.failure = failure
    site = watch.attach(make_harness(profile=mapper))
    site.client.cookies = signed_in.client.cookies
    return site


@pytest.mark.parametrize("failure", FAILURES)
def test_session_the_mapper_can_no_longer_map_is_cleared_not_a_500(
        make_harness: Any, watch: SecretWatch, failure: str) -> None:
    before, _ = mapped_site(make_harness, watch)
    before.sign_in()
    assert before.me()["name"] == "Mapped Alice"
    site = new_release(make_harness, watch, before, failure)
    assert site.session_cookie_names()
    for path in ("/", API_SESSION, "/", API_SESSION):
        response = site.client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.text)
        assert (response.json() is None) if path == API_SESSION else (response.json()["authenticated"] is False)
    # The first of these requests cleared the session: later ones carry no cookie.
    assert site.session_cookie_names() == []


@pytest.mark.parametrize("path", ["/", API_SESSION])
def test_session_the_mapper_cannot_map_clears_its_cookie_on_first_sight(
        make_harness: Any, watch: SecretWatch, path: str) -> None:
    before, _ = mapped_site(make_harness, watch)
    before.sign_in()
    names = before.session_cookie_names()
    site = new_release(make_harness, watch, before, "raises")
    response = site.client.get(path)
    assert response.status_code == 200, response.text
    assert set(names) <= deleted_names(response)
    assert session_written(response) == []


def test_a_failing_mapper_is_logged_once_per_bug_not_per_request(
        make_harness: Any, watch: SecretWatch, caplog: pytest.LogCaptureFixture) -> None:
    failing, mapper = mapped_site(make_harness, watch)
    mapper.failure = "raises"
    for _ in range(6):
        assert_rejected_callback(failing, failing.sign_in(), "Configuration")
    working, _ = mapped_site(make_harness, watch)
    cookies = []
    for _ in range(6):
        working.client.cookies.clear()
        working.sign_in()
        cookies.append(dict(working.client.cookies))
    for jar_ in cookies:
        failing.client.cookies.clear()
        failing.client.cookies.update(jar_)
        assert failing.client.get("/").json()["authenticated"] is False
        assert failing.client.get(API_SESSION).json() is None
    records = failure_records(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].exc_info is not None  # the developer gets the traceback, once
    assert records[0].getMessage().startswith("the app's profile mapper raised on GET /")
