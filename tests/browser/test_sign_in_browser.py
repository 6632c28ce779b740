"""A person in chromium signs in and out of each example app, through the real oidc-provider's
pages. Screenshots of every step land in tests/artifacts/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from e2e.harness import KINDS, ROOT, Stack

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

SCREENSHOTS = ROOT / "tests" / "artifacts" / "screenshots"
LOOPBACK = {"127.0.0.1", "localhost"}


@pytest.fixture(params=(*KINDS, "django"))
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    # The app is opened as `localhost`, the provider lives on 127.0.0.1: cookies are not
    # port-scoped, so two hosts keep the app's and the provider's cookies apart, as in the demo.
    env = {"DJANGO_DATABASE": str(tmp_path / "db.sqlite3")} if request.param == "django" else {}
    running = Stack(str(request.param), app_host="localhost", env=env)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1024, "height": 720})
    context.set_default_timeout(15_000)

    def loopback_only(route: Route) -> None:
        # Hermetic: the avatars.example.com picture (and anything else remote) is refused.
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            route.abort()

    context.route("**/*", loopback_only)
    try:
        yield context.new_page()
    finally:
        context.close()


def starting_with(url: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(url))


def test_sign_in_and_out_in_a_browser(page: Page, stack: Stack) -> None:
    from playwright.sync_api import expect

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    step = iter(range(1, 100))

    def shot(name: str) -> None:
        path: Path = SCREENSHOTS / f"{stack.kind}-{next(step):02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)

    op = stack.op
    op.reset_stats()
    status = page.locator("#session-status")

    page.goto(stack.url("/"))
    expect(status).to_have_text("signed out")
    expect(page.get_by_role("link", name="Continue with WeChat")).to_be_visible()
    expect(page.get_by_role("link", name="Continue with Hugging Face")).to_be_visible()
    shot("home-signed-out")

    page.get_by_role("link", name="Sign in", exact=True).click()
    page.wait_for_url(starting_with(f"{op.base_url}/interaction/"))
    page.get_by_label("User name").fill("alice")
    shot("provider-sign-in")
    page.get_by_role("button", name="Sign in").click()

    page.wait_for_url(stack.url("/"))
    expect(status).to_have_text("signed in")
    expect(page.locator("h1.name")).to_have_text("Alice")
    expect(page.get_by_text("alice@example.com")).to_be_visible()
    expect(page.locator(".avatar")).to_have_text("A")  # the initial, as the picture cannot load here
    shot("home-signed-in")

    page.get_by_role("link", name="Profile", exact=True).click()
    page.wait_for_url(stack.url("/profile"))
    expect(page.locator("h1.name")).to_have_text("Alice")
    expect(page.locator("table")).to_contain_text("alice@example.com")
    expect(status).to_have_text("signed in")
    expect(page.locator("input[name=csrfToken]")).not_to_have_value("")  # filled from /api/auth/csrf
    shot("profile")

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(starting_with(op.end_session_endpoint))
    shot("provider-sign-out")
    page.get_by_role("button", name="Sign out").click()

    page.wait_for_url(stack.url("/"))
    expect(status).to_have_text("signed out")
    expect(page.get_by_role("link", name="Sign in", exact=True)).to_be_visible()
    shot("home-signed-out-again")
    assert page.context.request.get(stack.url("/api/auth/session")).json() is None
    stats = op.stats()
    assert stats["revocations"] == 1 and stats["end_session_success"] == 1

    # A protected page sends an anonymous visitor to sign in and brings them back to it.
    page.goto(stack.url("/profile"))
    page.wait_for_url(starting_with(f"{op.base_url}/interaction/"))
    page.get_by_label("User name").fill("bob")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(stack.url("/profile"))
    expect(page.locator("h1.name")).to_have_text("Bob")
    expect(status).to_have_text("signed in")
    shot("profile-after-redirect")


def test_two_tabs_sign_in_at_once(page: Page, stack: Stack) -> None:
    """Two sign-ins under way in one browser (two tabs at the provider's page at once): each
    completes, neither ends in MissingCSRF."""
    from playwright.sync_api import expect

    op = stack.op
    tabs = [page, page.context.new_page()]
    for tab in tabs:
        tab.goto(stack.url("/"))
        tab.get_by_role("link", name="Sign in", exact=True).click()
        tab.wait_for_url(starting_with(f"{op.base_url}/interaction/"))
    # The tab started last completes first; then the other one.
    for tab, login, name in ((tabs[1], "bob", "Bob"), (tabs[0], "alice", "Alice")):
        tab.get_by_label("User name").fill(login)
        tab.get_by_role("button", name="Sign in").click()
        tab.wait_for_url(stack.url("/"))
        expect(tab.locator("#session-status")).to_have_text("signed in")
        expect(tab.locator("h1.name")).to_have_text(name)
    names = [c["name"] for c in page.context.cookies(stack.url("/"))]
    assert not any("transaction" in n for n in names), names  # each callback cleared its own
