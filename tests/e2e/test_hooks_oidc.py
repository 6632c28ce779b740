"""`LogtoHooks` against the real oidc-provider, in an app under its real server (uvicorn with
async hooks, waitress with plain ones): the sign-in hook refuses one user, `session_data` keeps
roles through a real refresh, and the `session` hook shows them in `/session`."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .harness import KINDS, REFRESH_LEEWAY, ExampleServer, Stack

HERE = Path(__file__).resolve().parent
FRESH_FOR = 2  # seconds an access token is fresh before its refresh is due


def _server(kind: str) -> Any:
    def start(port: int, origin: str, env: dict[str, str], workdir: Path) -> ExampleServer:
        env = {**env, "PYTHONPATH": os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(HERE)) if p)}
        if kind == "starlette":
            command = [sys.executable, "-m", "uvicorn", "--factory", "--host", "127.0.0.1", "--port", str(port),
                       "hooks_app:asgi"]
        else:
            command = [sys.executable, "-m", "waitress", "--listen", f"127.0.0.1:{port}", "--call", "hooks_app:wsgi"]
        return ExampleServer(kind, port, origin, env, workdir, command=command)
    return start


@pytest.fixture(scope="module", params=KINDS)
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    running = Stack(str(request.param), server=_server(str(request.param)),
                    access_token_ttl=REFRESH_LEEWAY + FRESH_FOR)
    try:
        yield running
    finally:
        running.stop()


def sign_in(stack: Stack, browser: httpx.Client, username: str) -> httpx.Response:
    start = browser.get(stack.url("/api/auth/signin"))
    assert start.status_code == 302, f"{start.status_code} {start.text}\n{stack.server.log}"
    back = stack.op.login(browser, start.headers["location"], username)
    return browser.get(back)


def test_hooks_refuse_add_roles_keep_them_through_a_refresh_and_shape_the_session(stack: Stack) -> None:
    with httpx.Client(timeout=15.0, follow_redirects=False) as browser:
        refused = sign_in(stack, browser, "mallory")
        assert refused.status_code == 302, stack.server.log
        assert refused.headers["location"] == stack.url("/api/auth/error?error=AccessDenied")
        assert browser.get(stack.url("/me")).json()["authenticated"] is False

    with httpx.Client(timeout=15.0, follow_redirects=False) as browser:
        done = sign_in(stack, browser, "alice")
        assert done.status_code == 302 and done.headers["location"] == stack.url("/"), stack.server.log
        me = browser.get(stack.url("/me")).json()
        assert me["fields"] == {"roles": ["admin"], "trigger": "sign_in"}
        session = browser.get(stack.url("/api/auth/session")).json()
        assert session["user"]["roles"] == ["admin"] and session["user"]["name"] == "Alice"

        time.sleep(FRESH_FOR + 1)  # the access token is now due: the next request refreshes it
        refreshed = browser.get(stack.url("/me")).json()
        assert refreshed["access_token"] != me["access_token"], stack.server.log
        assert refreshed["fields"] == {"roles": ["admin"], "trigger": "refresh"}
        assert browser.get(stack.url("/api/auth/session")).json()["user"]["roles"] == ["admin"]
