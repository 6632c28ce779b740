"""The examples' devices page in chromium: two browsers signed in as one user (sessions in the
app's memory store); the page lists both, and its buttons end the other one, then all others,
through the middleware's JSON routes with the CSRF token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from e2e.harness import KINDS, Stack

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.5 Mobile/15E148 Safari/604.1")


@pytest.fixture(scope="module", params=KINDS)
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    running = Stack(str(request.param), app_host="localhost", env={"AUTH_SESSION_STORE": "memory"})
    try:
        yield running
    finally:
        running.stop()


def signed_in_context(chromium: Browser, stack: Stack, user_agent: str) -> BrowserContext:
    """A new browser (its own cookies) that signed in as alice through the provider's pages."""
    from playwright.sync_api import expect

    context = chromium.new_context(user_agent=user_agent)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(stack.url("/devices"))
    page.wait_for_url(re.compile("^" + re.escape(f"{stack.op.base_url}/interaction/")))
    page.get_by_label("User name").fill("alice")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(stack.url("/devices"))
    expect(page.locator("#session-status")).to_have_text("signed in")
    return context


def test_devices_page_ends_the_other_devices(chromium: Browser, stack: Stack) -> None:
    from playwright.sync_api import expect

    laptop = signed_in_context(chromium, stack, FIREFOX)
    phone = signed_in_context(chromium, stack, SAFARI)
    tablet = signed_in_context(chromium, stack, SAFARI.replace("iPhone", "iPad"))
    try:
        page = laptop.pages[0]
        page.reload()
        rows = page.locator("#device-list tr")
        expect(rows).to_have_count(3)
        expect(rows.nth(0)).to_contain_text("Firefox on Linux (this device)")
        expect(rows.nth(0).get_by_role("button", name="End")).to_have_count(0)
        phone_row = rows.filter(has_text="Safari on iPhone")
        phone_row.get_by_role("button", name="End").click()
        expect(rows).to_have_count(2)
        assert phone.request.get(stack.url("/api/me")).status == 401
        assert tablet.request.get(stack.url("/api/me")).status == 200

        page.get_by_role("button", name="Sign out everywhere else").click()
        expect(rows).to_have_count(1)
        expect(page.get_by_role("button", name="Sign out everywhere else")).to_be_hidden()
        assert tablet.request.get(stack.url("/api/me")).status == 401
        assert laptop.request.get(stack.url("/api/me")).status == 200
    finally:
        for context in (laptop, phone, tablet):
            context.close()
