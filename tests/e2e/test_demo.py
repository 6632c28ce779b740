"""`examples/demo.py` (`make demo`, `make demo-flask`, `make demo-fastapi`) as a person runs it: up, sign in, Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from interop.provider import free_loopback_port, parse_forms

from .harness import AUTH_SECRET, CLIENT_ID, CLIENT_SECRET, EXAMPLES, KINDS, start_provider

DEMO = EXAMPLES / "demo.py"


class Demo:
    """`python examples/demo.py <kind>` in its own process group, like a terminal's foreground job."""

    def __init__(self, kind: str, env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(DEMO), kind], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._reader.join(timeout=2)
                raise AssertionError(f"the demo never printed {text!r}:\n{self.output}")
            time.sleep(0.05)

    def wait(self, timeout: float = 20.0) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def ctrl_c(self) -> int:
        """What Ctrl-C does in a terminal: SIGINT to the whole foreground process group."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.wait()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def demo_env() -> dict[str, str]:
    """A fresh machine: no AUTH_* settings, no .env (the demo runs in an empty folder)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("AUTH_") and key not in ("HOST", "PORT", "LOGTO_DEV_PROVIDER_PORT")}
    env.update(PORT=str(free_loopback_port()), LOGTO_DEV_PROVIDER_PORT=str(free_loopback_port()),
               PYTHONUNBUFFERED="1")
    return env


RunDemo = Callable[[str, dict[str, str]], Demo]


@pytest.fixture
def run_demo(tmp_path: Path) -> Iterator[RunDemo]:
    """Start demos in an empty folder; any still running at the end are killed."""
    started: list[Demo] = []

    def run(kind: str, env: dict[str, str]) -> Demo:
        demo = Demo(kind, env, tmp_path)
        started.append(demo)
        return demo

    try:
        yield run
    finally:
        for demo in started:
            demo.kill()


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def sign_in_with_dev_provider(browser: httpx.Client, app: str, username: str) -> str:
    """Open /profile, fill in the development provider's form; returns the profile page."""
    response = browser.get(f"{app}/profile", follow_redirects=True)
    assert response.status_code == 200 and "/oidc/auth" in str(response.url), response.text
    form = next(form for form in parse_forms(response.text) if "login" in form.fields)
    fields = {**form.fields, "login": username, "action": "login"}
    landed = browser.post(urljoin(str(response.url), form.action), data=fields, follow_redirects=True)
    assert str(landed.url) == f"{app}/profile", landed.text
    return landed.text


@pytest.mark.parametrize("kind", KINDS)
def test_demo_on_a_fresh_machine(kind: str, demo_env: dict[str, str], run_demo: RunDemo) -> None:
    port, provider_port = int(demo_env["PORT"]), int(demo_env["LOGTO_DEV_PROVIDER_PORT"])
    demo = run_demo(kind, demo_env)
    demo.wait_for("Press Ctrl-C")
    assert "DEVELOPMENT PROVIDER — FOR DEVELOPMENT ONLY" in demo.output
    assert f"Open http://localhost:{port}\n" in demo.output
    assert "throwaway" in demo.output  # no AUTH_SECRET was set

    app = f"http://localhost:{port}"
    with httpx.Client(timeout=10.0) as browser:
        profile = sign_in_with_dev_provider(browser, app, "alice")
        assert "alice@example.com" in profile and ">Sign out<" in profile

        # /api-demo works out of the box: the development provider serves the example API's
        # resource and alice's organizations.
        api_demo = browser.get(f"{app}/api-demo", params={"organization": "org-globex"})
        assert api_demo.status_code == 200, api_demo.text
        assert '<span id="api-status" class="badge">200</span>' in api_demo.text, api_demo.text
        assert "https://api.example.local" in api_demo.text and "&quot;read:items&quot;" in api_demo.text
        assert '<option value="org-acme">' in api_demo.text
        assert '<option value="org-globex" selected>' in api_demo.text
        assert "urn:logto:organization:org-globex" in api_demo.text

    assert demo.ctrl_c() == 0, demo.output
    assert "demo: stopping" in demo.output
    assert "Traceback" not in demo.output
    assert port_is_free(port) and port_is_free(provider_port)


def test_demo_django(demo_env: dict[str, str], run_demo: RunDemo, tmp_path: Path) -> None:
    """`make demo-django`: the Django example (its User linked to the Logto user) on the
    development provider."""
    port = int(demo_env["PORT"])
    demo = run_demo("django", {**demo_env, "DJANGO_DATABASE": str(tmp_path / "demo.sqlite3")})
    demo.wait_for("Press Ctrl-C")
    app = f"http://localhost:{port}"
    with httpx.Client(timeout=10.0) as browser:
        profile = sign_in_with_dev_provider(browser, app, "alice")
        assert "alice@example.com" in profile and ">Sign out<" in profile
        me = browser.get(f"{app}/api/me").json()
        assert me["django_user"]["username"] == f"logto-{me['user']['id']}"


def test_demo_fastapi(demo_env: dict[str, str], run_demo: RunDemo) -> None:
    """`make demo-fastapi`: sign in from a page (`LoginRequired`), then the API route gets an
    access token for the development provider's resource and calls the example API with it."""
    port = int(demo_env["PORT"])
    demo = run_demo("fastapi", demo_env)
    demo.wait_for("Press Ctrl-C")
    app = f"http://localhost:{port}"
    with httpx.Client(timeout=10.0, headers={"Accept": "text/html"}) as browser:
        profile = sign_in_with_dev_provider(browser, app, "alice")
        assert "alice@example.com" in profile and ">Sign out<" in profile
        items = browser.get(f"{app}/api/items", headers={"Accept": "application/json"})
        assert items.status_code == 200, items.text
        assert items.json()["caller"]["scopes"] == ["read:items"]
    assert demo.ctrl_c() == 0, demo.output
    assert "Traceback" not in demo.output


def test_demo_uses_a_real_tenant_when_configured(demo_env: dict[str, str], run_demo: RunDemo) -> None:
    port = int(demo_env["PORT"])
    app = f"http://localhost:{port}"
    op = start_provider(app)
    try:
        demo_env.update(AUTH_LOGTO_ISSUER=op.issuer, AUTH_LOGTO_ID=CLIENT_ID, AUTH_LOGTO_SECRET=CLIENT_SECRET,
                        AUTH_SECRET=AUTH_SECRET, AUTH_URL=app)
        demo = run_demo("starlette", demo_env)
        demo.wait_for("Press Ctrl-C")
        assert f"signing in with {op.issuer}" in demo.output
        assert "DEVELOPMENT PROVIDER" not in demo.output
        assert port_is_free(int(demo_env["LOGTO_DEV_PROVIDER_PORT"]))

        with httpx.Client(timeout=10.0) as browser:
            start = browser.get(f"{app}/api/auth/signin", params={"callbackUrl": "/api/me"})
            landed = browser.get(op.login(browser, start.headers["location"], "bob"), follow_redirects=True)
            assert landed.json()["user"]["name"] == "Bob"
        assert demo.ctrl_c() == 0, demo.output
    finally:
        op.stop()


def test_demo_explains_a_taken_port(demo_env: dict[str, str], run_demo: RunDemo) -> None:
    port = int(demo_env["PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        demo = run_demo("flask", demo_env)
        assert demo.wait() == 1
    assert f"port {port} on 127.0.0.1 is already in use" in demo.output
    assert "PORT=<port> make demo-flask" in demo.output
    assert port_is_free(int(demo_env["LOGTO_DEV_PROVIDER_PORT"]))  # nothing was left running
