"""Run an example app with sign-in that works on a fresh machine: `make demo` / `make demo-flask` /
`make demo-django`, `make demo-fastapi`.

    python examples/demo.py starlette|flask|django|fastapi

Without `AUTH_LOGTO_ISSUER` (in the environment or in `.env`) it starts the local development
provider (`python -m logto_middleware.testing`, a fake Logto that signs in any user name) on
127.0.0.1:3001 and points the example at it, with a throwaway AUTH_SECRET when none is set.
With `AUTH_LOGTO_ISSUER` set it runs the example against that Logto tenant instead.

The development provider serves an example API resource (DEMO_API_RESOURCE, scope read:items)
and two organizations for alice (one for bob), so the example's /api-demo page works out of the
box: it gets an access token for the resource, calls the example API with it and switches
organizations.

PORT (default 3000) moves the example, LOGTO_DEV_PROVIDER_PORT (default 3001) the provider;
LOGTO_DEV_ACCESS_TOKEN_TTL (seconds, default 3600) shortens the access tokens to watch them being
refreshed. Ctrl-C stops everything.
"""

from __future__ import annotations

import errno
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

import httpx

EXAMPLES = Path(__file__).resolve().parent
KINDS = ("starlette", "flask", "django", "fastapi")
MAKE_TARGETS = {"starlette": "demo", "flask": "demo-flask", "django": "demo-django", "fastapi": "demo-fastapi"}
HOST = "127.0.0.1"
DEFAULT_APP_PORT = 3000
DEFAULT_PROVIDER_PORT = 3001
DEV_CLIENT_ID = "demo-app"
DEV_CLIENT_SECRET = "demo#secret:for+local-development"
STARTUP_TIMEOUT = 30.0
# What the development provider knows besides users: one API resource (the example API's) and
# organization memberships, with the scopes that make the example's /api-demo page show them.
DEMO_API_RESOURCE = "https://api.example.local"
DEMO_API_SCOPES = ("read:items", "write:items")
DEMO_ORGANIZATIONS = {"alice": ("org-acme", "org-globex"), "bob": ("org-acme",)}
DEMO_SCOPES = ("openid", "offline_access", "profile", "email", "custom_data", "identities",
               "urn:logto:scope:organizations", "read:items")


class DemoError(Exception):
    """Something the person running the demo must fix; the message says what."""


class Child:
    """One subprocess of the demo, stopped on the way out."""

    def __init__(self, name: str, command: Sequence[str], env: Mapping[str, str]) -> None:
        self.name = name
        # Unbuffered, so its lines interleave with the demo's own in the order they happen.
        self.process = subprocess.Popen(list(command), env={**env, "PYTHONUNBUFFERED": "1"},
                                        stdin=subprocess.DEVNULL)

    def exited(self) -> int | None:
        return self.process.poll()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"demo: {self.name} did not stop; killing it", file=sys.stderr)
                self.process.kill()
                self.process.wait()


def read_settings() -> dict[str, str]:
    """The environment over `.env` from the current directory (the example reads it the same way)."""
    values: dict[str, str] = {}
    dotenv_path = Path.cwd() / ".env"
    if dotenv_path.is_file():
        try:
            from dotenv import dotenv_values
        except ImportError:
            print("demo: python-dotenv is not installed; ignoring .env", file=sys.stderr)
        else:
            values = {key: value for key, value in dotenv_values(dotenv_path).items() if value is not None}
    values.update(os.environ)
    return values


def port_setting(settings: Mapping[str, str], name: str, default: int) -> int:
    raw = settings.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise DemoError(f"{name} must be a port number, not {raw!r}")
    return int(raw)


def ensure_free(port: int, what: str, setting: str, kind: str) -> None:
    """Fail with a clear message when something already listens on the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the servers themselves: a port in TIME_WAIT after a previous run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
            raise DemoError(
                f"port {port} on {HOST} {reason}, so the {what} cannot start there.\n"
                f"Stop whatever listens on it (is another demo still running? try `lsof -i :{port}`), "
                f"or pick another port: {setting}=<port> make {MAKE_TARGETS[kind]}"
            ) from None


def wait_until_up(child: Child, url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        code = child.exited()
        if code is not None:
            raise DemoError(f"the {child.name} exited with status {code} while starting (see its output above)")
        try:
            httpx.get(url, timeout=2.0)
        except httpx.HTTPError:
            time.sleep(0.2)
        else:
            return
    raise DemoError(f"the {child.name} did not answer {url} within {STARTUP_TIMEOUT:.0f} s")


def app_command(kind: str) -> list[str]:
    return [sys.executable, str(EXAMPLES / kind / "app.py")]


def start_with_dev_provider(kind: str, settings: Mapping[str, str], children: list[Child]) -> str:
    app_port = port_setting(settings, "PORT", DEFAULT_APP_PORT)
    provider_port = port_setting(settings, "LOGTO_DEV_PROVIDER_PORT", DEFAULT_PROVIDER_PORT)
    ttl = settings.get("LOGTO_DEV_ACCESS_TOKEN_TTL", "").strip() or "3600"
    if not ttl.isdigit() or int(ttl) < 1:
        raise DemoError(f"LOGTO_DEV_ACCESS_TOKEN_TTL must be a number of seconds, not {ttl!r}")
    if app_port == provider_port:
        raise DemoError("PORT and LOGTO_DEV_PROVIDER_PORT must differ")
    ensure_free(provider_port, "development provider", "LOGTO_DEV_PROVIDER_PORT", kind)
    ensure_free(app_port, f"{kind} example", "PORT", kind)
    # The app is opened as localhost and the provider lives on 127.0.0.1: two hosts, so their
    # cookies never mix in the browser.
    app_url = f"http://localhost:{app_port}"
    issuer = f"http://{HOST}:{provider_port}/oidc"
    provider = Child("development provider", [
        sys.executable, "-m", "logto_middleware.testing", "--host", HOST, "--port", str(provider_port),
        "--issuer", issuer, "--client-id", DEV_CLIENT_ID, "--client-secret", DEV_CLIENT_SECRET,
        "--redirect-uri", f"{app_url}/api/auth/callback/logto", "--post-logout-redirect-uri", f"{app_url}/",
        "--resource", f"{DEMO_API_RESOURCE}={','.join(DEMO_API_SCOPES)}", "--access-token-ttl", ttl,
        *(argument for user, organizations in DEMO_ORGANIZATIONS.items()
          for argument in ("--organization", f"{user}={','.join(organizations)}")),
    ], os.environ)
    children.append(provider)
    wait_until_up(provider, f"{issuer}/.well-known/openid-configuration")

    secret = settings.get("AUTH_SECRET", "").strip()
    if not secret:
        secret = secrets.token_urlsafe(33)
        print("demo: AUTH_SECRET is not set; using a throwaway one (sessions end when the demo stops)")
    env = {
        **os.environ,
        "AUTH_LOGTO_ISSUER": issuer,
        "AUTH_LOGTO_ID": DEV_CLIENT_ID,
        "AUTH_LOGTO_SECRET": DEV_CLIENT_SECRET,
        "AUTH_SECRET": secret,
        "AUTH_URL": app_url,
        "AUTH_LOGTO_RESOURCES": DEMO_API_RESOURCE,
        "AUTH_LOGTO_SCOPES": " ".join(DEMO_SCOPES),
        "HOST": HOST,
        "PORT": str(app_port),
    }
    # The example API is the one of the development provider's resource.
    for name in ("EXAMPLE_API_RESOURCE", "EXAMPLE_API_URL"):
        env.pop(name, None)
    app = Child(f"{kind} example", app_command(kind), env)
    children.append(app)
    wait_until_up(app, f"http://{HOST}:{app_port}/api/auth/providers")
    return app_url


def start_with_logto(kind: str, settings: Mapping[str, str], children: list[Child]) -> str:
    app_port = port_setting(settings, "PORT", DEFAULT_APP_PORT)
    ensure_free(app_port, f"{kind} example", "PORT", kind)
    app = Child(f"{kind} example", app_command(kind), {**os.environ, "HOST": HOST, "PORT": str(app_port)})
    children.append(app)
    wait_until_up(app, f"http://{HOST}:{app_port}/api/auth/providers")
    return settings.get("AUTH_URL", "").strip().rstrip("/") or f"http://localhost:{app_port}"


def banner(lines: Sequence[str]) -> str:
    width = max(len(line) for line in lines) + 4
    rule = "=" * width
    return "\n".join(["", rule, *(f"  {line}" for line in lines), rule, ""])


def supervise(children: Sequence[Child]) -> int:
    """Wait for Ctrl-C; a child that dies on its own ends the demo."""
    while True:
        for child in children:
            code = child.exited()
            if code is not None:
                print(f"demo: the {child.name} exited with status {code}; stopping", file=sys.stderr)
                return 1
        time.sleep(0.3)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1 or argv[0] not in KINDS:
        print(f"usage: python examples/demo.py {'|'.join(KINDS)}", file=sys.stderr)
        return 2
    kind = argv[0]
    signal.signal(signal.SIGTERM, _terminate)
    settings = read_settings()
    children: list[Child] = []
    try:
        if settings.get("AUTH_LOGTO_ISSUER", "").strip():
            url = start_with_logto(kind, settings, children)
            print(banner([
                f"Logto + {kind} example, signing in with {settings['AUTH_LOGTO_ISSUER'].strip()}",
                f"Open {url}",
                f"(the Logto application needs the redirect URI {url}/api/auth/callback/logto)",
                "Press Ctrl-C to stop.",
            ]), flush=True)
        else:
            url = start_with_dev_provider(kind, settings, children)
            print(banner([
                "!!! DEVELOPMENT PROVIDER — FOR DEVELOPMENT ONLY. NEVER USE IT IN PRODUCTION. !!!",
                "Sign-in goes to a fake Logto that accepts any user name (try: alice).",
                f"/api-demo calls the example API with an access token for {DEMO_API_RESOURCE}.",
                "Set AUTH_LOGTO_ISSUER (and the rest) in .env to use your Logto tenant instead.",
                "",
                f"Open {url}",
                "Press Ctrl-C to stop.",
            ]), flush=True)
        return supervise(children)
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: stopping", flush=True)
        return 0
    finally:
        # Ctrl-C in a terminal reaches the children as well; stop whatever is still running.
        for child in reversed(children):
            child.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
