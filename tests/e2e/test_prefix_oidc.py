"""Both examples served under a path prefix by their real servers, against the real oidc-provider
whose client has only the prefixed URIs registered: Starlette under `uvicorn --root-path /app`
behind a proxy that strips the prefix (uvicorn puts it back in `root_path` and `path`), Flask under
`waitress-serve --url-prefix /app` (`SCRIPT_NAME`). Sign-in, the user on a page under the prefix,
sign-out."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from .harness import EXAMPLES, KINDS, ExampleServer, Stack

PREFIX = "/app"


def _server(kind: str) -> Any:
    def start(port: int, origin: str, env: dict[str, str], workdir: Path) -> ExampleServer:
        app_dir = EXAMPLES / kind
        env = {**env, "PYTHONPATH": os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(app_dir)) if p)}
        if kind == "starlette":
            command = [sys.executable, "-m", "uvicorn", "--root-path", PREFIX, "--host", "127.0.0.1",
                       "--port", str(port), "app:app"]
        else:
            command = [sys.executable, "-m", "waitress", "--url-prefix", PREFIX, "--listen", f"127.0.0.1:{port}",
                       "--call", "app:create_app"]
        return ExampleServer(kind, port, origin, env, workdir, command=command)
    return start


@pytest.fixture(scope="module", params=KINDS)
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    running = Stack(str(request.param), server=_server(str(request.param)), prefix=PREFIX)
    try:
        yield running
    finally:
        running.stop()


class Browser:
    """A browser on the public URLs under /app; for uvicorn, the proxy in front that strips the
    prefix before passing the request on."""

    def __init__(self, stack: Stack, client: httpx.Client) -> None:
        self.stack, self.client = stack, client

    def public(self, path: str) -> str:
        return self.stack.url(PREFIX + path)

    def fetch(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if self.stack.kind == "starlette":
            parts = urlsplit(url)
            assert parts.path.startswith(PREFIX + "/"), url
            url = parts._replace(path=parts.path[len(PREFIX):]).geturl()
        return self.client.request(method, url, **kwargs)


@pytest.fixture
def browser(stack: Stack) -> Iterator[Browser]:
    with httpx.Client(timeout=15.0, follow_redirects=False) as client:
        yield Browser(stack, client)


def test_sign_in_and_out_under_a_prefix(stack: Stack, browser: Browser) -> None:
    op = stack.op
    start = browser.fetch("GET", browser.public("/api/auth/signin"), params={"callbackUrl": "/app/api/me"})
    assert start.status_code == 302, f"{start.status_code} {start.text}\n{stack.server.log}"
    location = start.headers["location"]
    assert location.startswith(op.authorization_endpoint + "?"), location
    assert parse_qs(urlsplit(location).query)["redirect_uri"] == [browser.public("/api/auth/callback/logto")]

    back = op.login(browser.client, location, "alice")
    assert back.startswith(browser.public("/api/auth/callback/logto?")), back
    landed = browser.fetch("GET", back)
    assert landed.status_code == 302, f"{landed.status_code} {landed.text}\n{stack.server.log}"
    assert landed.headers["location"] == browser.public("/api/me")
    me = browser.fetch("GET", landed.headers["location"])
    assert me.status_code == 200, f"{me.status_code} {me.text}\n{stack.server.log}"
    assert me.json()["user"]["id"] == "alice"
    # The devices page calls the routes under the prefix, where they answer.
    devices = browser.fetch("GET", browser.public("/devices"))
    assert devices.status_code == 200 and 'data-auth-base="/app/api/auth"' in devices.text, devices.text
    listed = browser.fetch("GET", browser.public("/api/auth/sessions"))
    assert listed.status_code == 200 and [s["current"] for s in listed.json()["sessions"]] == [True], listed.text

    signout = browser.fetch("POST", browser.public("/api/auth/signout"), headers={"Origin": stack.server.origin})
    assert signout.status_code == 302, signout.text
    end_session = signout.headers["location"]
    assert parse_qs(urlsplit(end_session).query)["post_logout_redirect_uri"] == [browser.public("/")]
    after = op.logout(browser.client, end_session)
    assert after.startswith(browser.public("/")), after
    assert op.stats()["end_session_success"] == 1
    assert browser.fetch("GET", browser.public("/api/me")).status_code == 401


def test_pages_link_under_the_prefix(stack: Stack, browser: Browser) -> None:
    """The example's pages link, fetch and redirect under the prefix, as a browser follows them."""
    home = browser.fetch("GET", browser.public("/"))
    assert home.status_code == 200, home.text
    page = home.text
    assert f'data-auth-base="{PREFIX}/api/auth"' in page
    assert f'href="{PREFIX}/profile"' in page and f'href="{PREFIX}/api/me"' in page
    assert f'href="{PREFIX}/api/auth/signin?callbackUrl=%2Fapp%2F"' in page
    assert 'href="/profile"' not in page and 'href="/api/auth/' not in page
    protected = browser.fetch("GET", browser.public("/profile"))
    assert protected.status_code == 302, protected.text
    target = urlsplit(protected.headers["location"])
    assert target.path == f"{PREFIX}/api/auth/signin", protected.headers["location"]
    assert parse_qs(target.query).get("callbackUrl") == [f"{PREFIX}/profile"], protected.headers["location"]
