"""One app, two credentials, against the real oidc-provider configured like a Logto tenant with
an API resource (permissions read:items, write:items), under real servers (uvicorn, waitress):
a browser signs in and sees its pages as the session's user; the API (`/api/items`, bearer-only)
accepts the provider's JWT access token for the resource, from a client without cookies or from
the same browser, refuses the cookie alone and a bad token beside a good cookie (401, never the
cookie's user), and a real token once it expired. The app: tests/e2e/combined_apps.py."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from logto_middleware._protocol.tokens import decode_unverified

from .combined_apps import API_PATH
from .harness import KINDS, ExampleServer, Stack

HERE = Path(__file__).resolve().parent
RESOURCE = "https://api.combined.example"
TOKEN_TTL = 4  # seconds: the test watches a real token expire
REFRESH_LEEWAY = 1


def _server(kind: str):  # type: ignore[no-untyped-def]
    def start(port: int, origin: str, env: dict[str, str], workdir: Path) -> ExampleServer:
        env = {**env, "PYTHONPATH": os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(HERE)) if p)}
        if kind == "starlette":
            command = [sys.executable, "-m", "uvicorn", "--factory", "combined_apps:starlette_app", "--app-dir",
                       str(HERE), "--host", "127.0.0.1", "--port", str(port)]
        else:
            command = [sys.executable, "-m", "waitress", "--listen", f"127.0.0.1:{port}", "--call",
                       "combined_apps:flask_app"]
        return ExampleServer(kind, port, origin, env, workdir, command=command)
    return start


@pytest.fixture(scope="module", params=KINDS)
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    kind = str(request.param)
    running = Stack(kind, server=_server(kind), access_token_ttl=TOKEN_TTL,
                    env={"AUTH_LOGTO_RESOURCES": RESOURCE, "AUTH_REFRESH_LEEWAY": str(REFRESH_LEEWAY)},
                    provider_options={"resource_indicator": RESOURCE, "resource_scopes": ("read:items", "write:items")})
    try:
        yield running
    finally:
        running.stop()


def test_pages_to_the_session_and_the_api_to_access_tokens(stack: Stack) -> None:
    with httpx.Client(timeout=15.0) as browser, httpx.Client(timeout=15.0) as service:
        assert browser.get(stack.url("/")).json() == {"source": None, "id": "", "session": False}
        start = browser.get(stack.url("/api/auth/signin"), params={"callbackUrl": "/"})
        assert parse_qs(urlsplit(start.headers["location"]).query)["resource"] == [RESOURCE]
        landed = browser.get(stack.op.login(browser, start.headers["location"], "alice"))
        assert landed.status_code in (302, 303), f"{landed.text}\n{stack.server.log}"

        # The page: the cookie's user.
        page = browser.get(stack.url("/")).json()
        assert page == {"source": "session", "id": "alice", "session": True}, stack.server.log

        # A real access token of the provider for the API resource (through the session).
        token = browser.get(stack.url("/token")).json()["token"]
        claims = decode_unverified(token)[1]
        assert (claims["aud"], claims["sub"], claims["scope"]) == (RESOURCE, "alice", "read:items")

        # The API: the token's user, from a client without any cookie ...
        api = service.get(stack.url(API_PATH), headers={"authorization": f"Bearer {token}"})
        assert api.status_code == 200, f"{api.text}\n{stack.server.log}"
        assert api.json() == {"source": "bearer", "id": "alice", "scopes": ["read:items"]}
        # ... or from the browser: the header decides; the cookie alone is no credential there.
        assert browser.get(stack.url(API_PATH), headers={"authorization": f"Bearer {token}"}).json()["source"] == \
            "bearer"
        assert browser.get(stack.url(API_PATH)).status_code == 401
        # A bad token beside a good cookie: 401 with the RFC 6750 challenge, not the cookie's user.
        bad = browser.get(stack.url(API_PATH), headers={"authorization": f"Bearer {token[:-6]}AAAAAA"})
        assert bad.status_code == 401
        assert bad.headers["www-authenticate"].startswith('Bearer realm="api", error="invalid_token"')
        # A token on a page is the token's user too: no session behind it.
        assert service.get(stack.url("/"), headers={"authorization": f"Bearer {token}"}).json() == {
            "source": "bearer", "id": "alice", "session": False}

        # The real token expires (no leeway): refused; the session goes on, with a new token.
        time.sleep(max(0.0, claims["exp"] - time.time() + 1.0))
        expired = service.get(stack.url(API_PATH), headers={"authorization": f"Bearer {token}"})
        assert expired.status_code == 401 and "expired" in expired.json()["error_description"]
        assert browser.get(stack.url("/")).json()["source"] == "session"
        fresh = browser.get(stack.url("/token")).json()["token"]
        assert fresh != token
        assert service.get(stack.url(API_PATH), headers={"authorization": f"Bearer {fresh}"}).status_code == 200
