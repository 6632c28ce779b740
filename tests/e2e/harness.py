"""The example apps under their real servers, signing in with the real oidc-provider.

`Stack` = one `OidcProviderProcess` (tests/interop/provider.py) + one example app
(`python examples/<kind>/app.py`: uvicorn for Starlette, waitress for Flask) in a subprocess on
a free loopback port, configured only through environment variables, as a user would.
Shared by tests/e2e and tests/browser.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from interop.provider import OidcProviderProcess, ProviderUnavailable, free_loopback_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
KINDS = ("starlette", "flask")
SERVERS = {"starlette": "uvicorn", "flask": "waitress"}

CLIENT_ID = "e2e-example"
# '#', ':' and '+' on purpose: client_secret_basic must form-urlencode the secret before base64
# (RFC 6749 §2.3.1); a '+' sent raw would reach the provider as a space.
CLIENT_SECRET = "e2e#client:secret+with+plus"
AUTH_SECRET = "e2e-session-secret-0123456789-abcdefghij"
# The examples refresh 60 s before expiry (the default refresh_leeway), so a 65 s access token
# is fresh for about 5 s and then due for a refresh.
REFRESH_LEEWAY = 60
ACCESS_TOKEN_TTL = REFRESH_LEEWAY + 5
# Variables of the developer's shell that would change the example under test.
_SCRUBBED = ("HOST", "PORT", "AUTH_URL", "AUTH_TRUST_HOST", "AUTH_REFRESH_LEEWAY", "AUTH_LOGTO_ISSUER",
             "AUTH_LOGTO_ID", "AUTH_LOGTO_SECRET", "AUTH_SECRET", "AUTH_LOGTO_RESOURCES", "AUTH_LOGTO_SCOPES",
             "AUTH_SESSION_STORE", "AUTH_SESSION_FORMAT", "AUTH_REFRESH_LOCK", "EXAMPLE_API_RESOURCE",
             "EXAMPLE_API_URL", "EXAMPLE_API_LEEWAY")


def require_all() -> bool:
    return os.environ.get("LOGTO_REQUIRE_ALL", "").strip().lower() in {"1", "true", "yes"}


def start_provider(app_origin: str, access_token_ttl: int = ACCESS_TOKEN_TTL,
                   **options: Any) -> OidcProviderProcess:
    """The real oidc-provider with one client for an app at `app_origin`; skips when node is missing.
    `options` go to `OidcProviderProcess.start` (resource_indicator, backchannel_logout_uri, ...)."""
    provider = OidcProviderProcess(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    try:
        return provider.start(
            redirect_uris=[f"{app_origin}/api/auth/callback/logto"],
            post_logout_redirect_uris=[f"{app_origin}/"],
            access_token_ttl=access_token_ttl,
            **options,
        )
    except ProviderUnavailable as exc:
        pytest.skip(f"the oidc-provider interop server is unavailable: {exc}")
        raise  # unreachable


class ExampleServer:
    """`python examples/<kind>/app.py` on 127.0.0.1:<port>, told it is served at `origin` (or
    another `command` serving it there, in a process group of its own with `own_group`)."""

    def __init__(self, kind: str, port: int, origin: str, env: dict[str, str], workdir: Path,
                 command: list[str] | None = None, own_group: bool = False) -> None:
        self.kind = kind
        self.port = port
        self.origin = origin
        self.log_path = workdir / f"{kind}-{port}.log"
        self._log = self.log_path.open("wb")
        # cwd is an empty folder, so a developer's .env cannot leak into the test.
        self.process = subprocess.Popen(
            command or [sys.executable, str(EXAMPLES / kind / "app.py")], cwd=workdir, env=env,
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=own_group)

    def url(self, path: str = "/") -> str:
        return self.origin + path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_up(self, timeout: float = 30.0) -> bool:
        """True once it answers; False if it exited (e.g. its port was taken meanwhile)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/api/auth/providers", timeout=2.0)
            except httpx.HTTPError:
                time.sleep(0.1)
            else:
                return True
        raise RuntimeError(f"the {self.kind} example did not come up within {timeout} s:\n{self.log}")

    def stop(self) -> int:
        """SIGTERM, as a process manager would; returns the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def example_env(origin: str, port: int, issuer: str, **extra: str) -> dict[str, str]:
    """The environment of an example app served at `origin` on 127.0.0.1:`port`: the test's
    settings only (the developer's own AUTH_* variables removed), plus `extra`."""
    env = {key: value for key, value in os.environ.items() if key not in _SCRUBBED}
    env.update(HOST="127.0.0.1", PORT=str(port), AUTH_URL=origin, AUTH_SECRET=AUTH_SECRET,
               AUTH_LOGTO_ISSUER=issuer, AUTH_LOGTO_ID=CLIENT_ID, AUTH_LOGTO_SECRET=CLIENT_SECRET,
               PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


class Stack:
    """A provider and an example app that signs in with it.

    `env` adds settings of the example (e.g. AUTH_LOGTO_RESOURCES); `provider_options` go to
    `OidcProviderProcess.start` (e.g. resource_indicator, resource_scopes); `server(port, origin,
    env, workdir)` starts the app another way than `python examples/<kind>/app.py` (an object
    with `wait_until_up()`, `stop()`, `log` and `url()`, as `ExampleServer`); `prefix` is the path
    the app is served under on its origin (the provider's registered URIs carry it).
    """

    def __init__(self, kind: str, *, app_host: str = "127.0.0.1", access_token_ttl: int = ACCESS_TOKEN_TTL,
                 env: dict[str, str] | None = None, provider_options: dict[str, Any] | None = None,
                 server: Callable[[int, str, dict[str, str], Path], Any] | None = None, prefix: str = "") -> None:
        self.kind = kind
        self.prefix = prefix
        self._server = server or (lambda port, origin, env, workdir: ExampleServer(kind, port, origin, env, workdir))
        self._workdir = tempfile.TemporaryDirectory(prefix=f"logto-e2e-{kind}-")
        self.workdir = Path(self._workdir.name)
        self.provider: OidcProviderProcess | None = None
        self.app: ExampleServer | None = None
        try:
            self._start(app_host, access_token_ttl, env or {}, provider_options or {})
        except BaseException:
            self.stop()
            raise

    def _start(self, app_host: str, access_token_ttl: int, extra_env: dict[str, str],
               provider_options: dict[str, Any]) -> None:
        for _attempt in range(3):  # a free port can be taken between choosing and binding it
            port = free_loopback_port()
            origin = f"http://{app_host}:{port}"
            self.provider = start_provider(origin + self.prefix, access_token_ttl, **provider_options)
            env = example_env(origin, port, self.provider.issuer, **extra_env)
            self.app = self._server(port, origin, env, self.workdir)
            if self.app.wait_until_up():
                return
            log = self.app.log
            self.app.stop()
            self.provider.stop()
            if "in use" not in log.lower():
                raise RuntimeError(f"the {self.kind} example exited while starting:\n{log}")
        raise RuntimeError(f"no free port for the {self.kind} example after 3 attempts")

    @property
    def op(self) -> OidcProviderProcess:
        assert self.provider is not None
        return self.provider

    @property
    def server(self) -> ExampleServer:
        assert self.app is not None
        return self.app

    def url(self, path: str = "/") -> str:
        return self.server.url(path)

    def stop(self) -> None:
        if self.app is not None:
            self.app.stop()
        if self.provider is not None:
            self.provider.stop()
        self._workdir.cleanup()


def timestamp(iso: str) -> float:
    """Seconds since the epoch of an ISO 8601 time as the examples write it ("...Z")."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def refresh_stats(op: OidcProviderProcess) -> dict[str, Any]:
    stats = op.stats()
    return {"success": stats["refresh_token_success"], "errors": stats["refresh_token_errors"],
            "outcomes": stats["refresh_token_outcomes"]}
