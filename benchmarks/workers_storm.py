"""Section 8: a refresh storm on a 4-worker server.

`uvicorn --workers 4` serving the Starlette example (`create_app()` through
tests/e2e/worker_apps.py, which adds an `X-Worker-Pid` header), configured only by environment
variables: default cookie session store, no Redis, AUTH_REFRESH_LOCK unset (the default
cross-process coordination). It signs in with the real oidc-provider (tests/interop/provider),
which rotates the refresh token on every use and revokes the grant when a spent one comes back.

The provider issues 62-s access tokens and the app refreshes 60 s before expiry, so a token is
due 2 s after it was issued. Each storm waits until the session's token is due, then sends
`requests` concurrent GET /api/me carrying the one session cookie, each on a fresh connection
(so they spread over the workers), released together by a barrier; the browser then takes the
responses' Set-Cookie headers in the order they arrived. Counted per storm: refresh_token grants
at the provider (successful and failed), requests not signed in, workers that answered; timed:
the slowest request from the release.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from fixtures import Log

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from interop.provider import OidcProviderProcess, free_loopback_port  # noqa: E402

WORKERS = 4
REFRESH_LEEWAY = 60
ACCESS_TOKEN_TTL = REFRESH_LEEWAY + 2
CLIENT_ID = "bench-workers"
CLIENT_SECRET = "bench-workers-secret"
SESSION_COOKIE = "logto.session-token"
USER = "alice"


def _start_server(port: int, issuer: str, log_path: Path) -> subprocess.Popen[bytes]:
    origin = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("AUTH_")}
    env.update(AUTH_URL=origin, AUTH_SECRET="bench-session-secret-0123456789-abcdefghij", AUTH_LOGTO_ISSUER=issuer,
               AUTH_LOGTO_ID=CLIENT_ID, AUTH_LOGTO_SECRET=CLIENT_SECRET, AUTH_REFRESH_LEEWAY=str(REFRESH_LEEWAY),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "uvicorn", "--factory", "worker_apps:starlette_app",
               "--app-dir", str(ROOT / "tests" / "e2e"), "--workers", str(WORKERS), "--host", "127.0.0.1",
               "--port", str(port), "--no-access-log", "--log-level", "warning", "--timeout-graceful-shutdown", "5"]
    with log_path.open("wb") as log:
        # cwd: an empty folder, so no .env is read; a process group of its own, so no worker is left behind.
        return subprocess.Popen(command, cwd=log_path.parent, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):  # workers left behind: the group is ours
        os.killpg(process.pid, signal.SIGKILL)


def _wait_until_up(process: subprocess.Popen[bytes], origin: str, log_path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx.get(origin + "/api/auth/providers", timeout=2.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"uvicorn --workers {WORKERS} did not start:\n{log_path.read_text(errors='replace')[-2000:]}")


def _apply(jar: dict[str, str], set_cookie: str) -> None:
    pair, _, attributes = set_cookie.partition(";")
    name, _, value = pair.strip().partition("=")
    if not name.startswith(SESSION_COOKIE):
        return
    if "max-age=0" in attributes.replace(" ", "").lower() or not value:
        jar.pop(name, None)
    else:
        jar[name] = value


def _storm(origin: str, cookie: str, requests: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = [{} for _ in range(requests)]
    released: list[float] = []
    barrier = threading.Barrier(requests, action=lambda: released.append(time.perf_counter()))

    def one(index: int) -> None:
        with httpx.Client(timeout=30.0) as client:  # a connection of its own
            try:
                barrier.wait(timeout=30)
                response = client.get(origin + "/api/me", headers={"Cookie": cookie, "Connection": "close"})
                body = response.json() if response.status_code == 200 else None
                ok = isinstance(body, dict) and body["user"]["id"] == USER and body["error"] is None
                results[index] = {"ok": ok, "status": response.status_code, "done": time.perf_counter(),
                                  "pid": response.headers.get("x-worker-pid"),
                                  "set_cookies": response.headers.get_list("set-cookie"),
                                  "expires": body["access_token_expires"] if ok and body else None}
            except Exception as exc:  # a failed request is a result, not a crash of the benchmark
                results[index] = {"ok": False, "status": 0, "done": time.perf_counter(), "pid": None,
                                  "set_cookies": [], "expires": None, "error": repr(exc)}

    threads = [threading.Thread(target=one, args=(i,)) for i in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        result["latency_ms"] = (result["done"] - released[0]) * 1000 if released else 0.0
    return results


def _due(expires: str) -> float:
    return datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp() - REFRESH_LEEWAY


def run(log: Log, storms: int = 3, requests: int = 20) -> dict[str, Any]:
    log(f"8. refresh storm on uvicorn --workers {WORKERS}: {storms} storms of {requests} requests")
    workdir = tempfile.TemporaryDirectory(prefix="logto-bench-workers-")
    port = free_loopback_port()
    origin = f"http://127.0.0.1:{port}"
    provider = OidcProviderProcess(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    server: subprocess.Popen[bytes] | None = None
    try:
        provider.start(redirect_uris=[f"{origin}/api/auth/callback/logto"], access_token_ttl=ACCESS_TOKEN_TTL)
        log_path = Path(workdir.name) / "uvicorn.log"
        server = _start_server(port, provider.issuer, log_path)
        _wait_until_up(server, origin, log_path)
        jar: dict[str, str] = {}
        with httpx.Client(timeout=15.0, follow_redirects=False) as browser:
            start = browser.get(origin + "/api/auth/signin", params={"callbackUrl": "/api/me"})
            landed = browser.get(provider.login(browser, start.headers["location"], USER))
            for set_cookie in landed.headers.get_list("set-cookie"):
                _apply(jar, set_cookie)
        cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
        expires = httpx.get(origin + "/api/me", headers={"Cookie": cookie}, timeout=15.0).json()[
            "access_token_expires"]
        cases: list[dict[str, Any]] = []
        for number in range(1, storms + 1):
            time.sleep(max(0.0, _due(expires) + 0.3 - time.time()))
            provider.reset_stats()
            results = _storm(origin, "; ".join(f"{k}={v}" for k, v in jar.items()), requests)
            stats = provider.stats()
            for result in sorted(results, key=lambda r: r["done"]):  # the browser's order
                for set_cookie in result["set_cookies"]:
                    _apply(jar, set_cookie)
            newer = [r["expires"] for r in results if r["expires"] and _due(r["expires"]) > _due(expires)]
            case = {"refresh_grants": stats["refresh_token_success"] + stats["refresh_token_errors"],
                    "refresh_outcomes": stats["refresh_token_outcomes"],
                    "invalid_grant": stats["refresh_token_error_codes"].get("invalid_grant", 0),
                    "failed": sum(not r["ok"] for r in results),
                    "workers": len({r["pid"] for r in results if r["pid"]}),
                    "slowest_ms": max(r["latency_ms"] for r in results)}
            cases.append(case)
            log(f"   storm {number}: grants {case['refresh_outcomes']}, {case['failed']} failed, "
                f"{case['workers']} workers, slowest {case['slowest_ms']:.0f} ms")
            if not jar:
                break  # the session is gone: later storms would only repeat that
            expires = max(newer, key=_due) if newer else expires
        after = httpx.get(origin + "/api/me", headers={"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())},
                          timeout=15.0)
        signed_in_after = after.status_code == 200 and after.json()["user"]["id"] == USER
        log(f"   afterwards: {'signed in' if signed_in_after else f'not signed in ({after.status_code})'}")
        return {"workers": WORKERS, "signed_in_after": signed_in_after, "requests": requests, "storms": cases,
                "storms_planned": storms,
                "access_token_ttl": ACCESS_TOKEN_TTL, "refresh_leeway": REFRESH_LEEWAY}
    finally:
        if server is not None:
            _stop_server(server)
        provider.stop()
        workdir.cleanup()
