"""A headless chromium for the session: Debian's /usr/bin/chromium, never a downloaded browser."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path(os.environ.get("LOGTO_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    # Module scope, not session: while Playwright's sync API runs, the main thread has a running
    # asyncio loop, which would break every later test that calls asyncio.run().
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip package playwright is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no chromium at {CHROMIUM}: `apt-get install chromium` (or `make system-deps`)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
