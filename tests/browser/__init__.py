"""Browser tests: Debian's chromium, driven by Playwright, signs in and out of the example apps."""
