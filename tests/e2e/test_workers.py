"""A signed-in user stays signed in under a multi-process server.

`uvicorn --workers 4` serving the Starlette example and `gunicorn -w 4` (sync workers) serving
the Flask example, each configured only through environment variables, with the default cookie
session store and no Redis, sign in with the real oidc-provider, which rotates the refresh token
on every use and revokes the whole grant when a spent one comes back.

Five times in a row, once the access token is due for a refresh, one browser fires 20 concurrent
requests, each on a fresh connection (so they spread over the worker processes), all carrying
the same session cookie; afterwards its cookie jar takes the Set-Cookie headers in the order the
responses arrived, as a browser does. Each burst must make exactly one refresh_token grant at the
provider and no failed one, every request must be signed in, and so must the session afterwards.
Processes that refresh on their own present the same refresh token several times: the provider
answers invalid_grant and revokes the grant, and the session is lost.

With AUTH_SESSION_FORMAT=authjs a quarter of the requests come from an Auth.js-style API caller
that sends the session JWE as `Authorization: Bearer` instead of the cookie. Such a request
cannot write a rotated refresh token back, so it must never refresh; it is served with the
session it carries (whose error may say the refresh was left to a cookie caller, never that a
refresh failed). Before each mixed burst, a burst of such callers alone checks exactly that:
no grant at all.

The requests name the worker that served them in an `X-Worker-Pid` header, added by the thin
wrapper in tests/e2e/worker_apps.py around the examples' `create_app()`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from interop.provider import OidcProviderProcess

from .harness import REFRESH_LEEWAY, ExampleServer, Stack, timestamp
from .worker_apps import WORKER_HEADER

HERE = Path(__file__).resolve().parent
WORKERS = 4
BURSTS = 5
CONCURRENT_REQUESTS = 20
BEARER_EVERY = 4  # authjs variant: requests 0, 4, 8, ... are Bearer callers (5 of 20)
BEARER_ONLY_REQUESTS = 8
USER = "alice"
REFRESH_FAILED = "RefreshAccessTokenError"  # the session's error after a refresh that failed
SESSION_COOKIES = {"logto": "logto.session-token", "authjs": "authjs.session-token"}
# (server, the example it serves): the ASGI example under uvicorn, under gunicorn's uvicorn workers
# and under hypercorn; the WSGI one under gunicorn with sync workers (one request at a time each)
# and with gthread workers (threads sharing the in-process single flight, processes the lock
# directory).
SERVERS = {"uvicorn": "starlette", "gunicorn": "flask", "gunicorn-gthread": "flask",
           "gunicorn-uvicorn": "starlette", "hypercorn": "starlette"}
DEPLOYMENTS = [*((server, session_format) for server in ("uvicorn", "gunicorn") for session_format in SESSION_COOKIES),
               *((server, "logto") for server in ("gunicorn-gthread", "gunicorn-uvicorn", "hypercorn"))]


def server_command(server: str, port: int) -> list[str]:
    bind, workers = f"127.0.0.1:{port}", str(WORKERS)
    if server == "uvicorn":
        return [sys.executable, "-m", "uvicorn", "--factory", "worker_apps:starlette_app", "--app-dir", str(HERE),
                "--workers", workers, "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
                "--timeout-graceful-shutdown", "5"]
    if server == "hypercorn":
        # (hypercorn has no --app-dir: the server's PYTHONPATH starts with this folder)
        return [sys.executable, "-m", "hypercorn", "--workers", workers, "--bind", bind, "--graceful-timeout", "5",
                "worker_apps:starlette_app()"]
    worker_class, app = {
        "gunicorn": (["--worker-class", "sync"], "worker_apps:flask_app()"),
        "gunicorn-gthread": (["--worker-class", "gthread", "--threads", "4"], "worker_apps:flask_app()"),
        "gunicorn-uvicorn": (["--worker-class", "uvicorn.workers.UvicornWorker"], "worker_apps:starlette_app()"),
    }[server]
    return [sys.executable, "-m", "gunicorn", "--workers", workers, *worker_class, "--pythonpath", str(HERE),
            "--bind", bind, "--graceful-timeout", "5", app]


class WorkerServer(ExampleServer):
    """A multi-process server in a process group of its own (the master and its workers)."""

    def __init__(self, server: str, port: int, env: dict[str, str], workdir: Path) -> None:
        env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, (str(HERE), env.get("PYTHONPATH"))))}
        super().__init__(server, port, f"http://127.0.0.1:{port}", env, workdir,
                         command=server_command(server, port), own_group=True)

    def stop(self) -> int:
        """SIGTERM to the master, as a process manager would; then SIGKILL to the group: workers
        left behind by a master that died are still ours."""
        status = super().stop()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return status


class Deployment(Stack):
    """The provider and one multi-process server of an example, signing in with it."""

    def __init__(self, server: str, session_format: str) -> None:
        self.server_name = server
        self.session_format = session_format
        self.session_cookie = SESSION_COOKIES[session_format]
        extra = {"AUTH_SESSION_FORMAT": session_format} if session_format != "logto" else {}
        super().__init__(SERVERS[server], env=extra,
                         server=lambda port, origin, env, workdir: WorkerServer(server, port, env, workdir))

    @property
    def web(self) -> WorkerServer:
        return self.server  # type: ignore[return-value]


@pytest.fixture(scope="module", params=DEPLOYMENTS, ids=[f"{s}-{f}" for s, f in DEPLOYMENTS])
def deployment(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    server, session_format = request.param
    if importlib.util.find_spec(server.split("-")[0]) is None:
        pytest.skip(f"pip package {server} is not installed (the [test] extra installs it)")
    running = Deployment(server, session_format)
    try:
        yield running
    finally:
        running.stop()


# -- the browser ---------------------------------------------------------------------------------


class CookieJar:
    """The browser's cookies of the app: Set-Cookie headers applied in the order they arrive."""

    def __init__(self, session_cookie: str) -> None:
        self.session_cookie = session_cookie
        self.cookies: dict[str, str] = {}

    def apply(self, set_cookie: str) -> None:
        pair, _, attributes = set_cookie.partition(";")
        name, _, value = pair.strip().partition("=")
        attrs = {a.strip().partition("=")[0].lower(): a.strip().partition("=")[2] for a in attributes.split(";")}
        if attrs.get("max-age", "").strip() in {"0", "-1"} or value == "":
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value

    def is_session(self, name: str) -> bool:
        return name == self.session_cookie or name.startswith(self.session_cookie + ".")

    @property
    def header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    @property
    def has_session(self) -> bool:
        return any(self.is_session(name) for name in self.cookies)

    @property
    def session_value(self) -> str:
        """The session's value, its chunks (name.0, name.1, ...) joined: what a Bearer caller sends."""
        if self.session_cookie in self.cookies:
            return self.cookies[self.session_cookie]
        chunks = []
        while f"{self.session_cookie}.{len(chunks)}" in self.cookies:
            chunks.append(self.cookies[f"{self.session_cookie}.{len(chunks)}"])
        return "".join(chunks)


@dataclass
class Answer:
    index: int
    bearer: bool
    status: int = 0
    body: Any = None
    set_cookies: list[str] = field(default_factory=list)
    pid: str | None = None
    arrived: float = 0.0

    @property
    def signed_in(self) -> bool:
        """Signed in as the user. A cookie caller's session must carry no error; a Bearer caller's
        may carry a marker that its due refresh was left to a cookie caller, never the marker of a
        failed refresh."""
        if not (self.status == 200 and isinstance(self.body, dict) and self.body.get("user", {}).get("id") == USER):
            return False
        error = self.body.get("error")
        return error is None or (self.bearer and error != REFRESH_FAILED)

    @property
    def error(self) -> Any:
        return self.body.get("error") if self.status == 200 and isinstance(self.body, dict) else self.body

    @property
    def brief(self) -> tuple[Any, ...]:
        """What a failure message shows of it."""
        return (self.index, "bearer" if self.bearer else "cookie", self.status, self.expiry, self.error)

    @property
    def expiry(self) -> str | None:
        return self.body.get("access_token_expires") if isinstance(self.body, dict) else None


def fire(dep: Deployment, jar: CookieJar, requests: int, bearer_every: int | None) -> list[Answer]:
    """`requests` concurrent GET /api/me, each on a connection of its own, released together."""
    cookie, token = jar.header, jar.session_value
    answers = [Answer(i, bearer_every is not None and i % bearer_every == 0) for i in range(requests)]
    barrier = threading.Barrier(requests)

    def call(answer: Answer) -> None:
        headers = {"Connection": "close"}
        if answer.bearer:
            headers["Authorization"] = f"Bearer {token}"
        else:
            headers["Cookie"] = cookie
        with httpx.Client(timeout=30.0) as client:
            try:
                barrier.wait(timeout=30)
                response = client.get(dep.web.url("/api/me"), headers=headers)
            except Exception as exc:
                answer.body = repr(exc)
                return
            answer.arrived = time.monotonic()
            answer.status = response.status_code
            answer.pid = response.headers.get(WORKER_HEADER)
            answer.set_cookies = response.headers.get_list("set-cookie")
            try:
                answer.body = response.json()
            except ValueError:
                answer.body = response.text[:200]

    threads = [threading.Thread(target=call, args=(answer,)) for answer in answers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


def sign_in(dep: Deployment) -> CookieJar:
    jar = CookieJar(dep.session_cookie)
    with httpx.Client(timeout=15.0, follow_redirects=False) as browser:
        start = browser.get(dep.web.url("/api/auth/signin"), params={"callbackUrl": "/api/me"})
        assert start.status_code in (302, 303), f"{start.status_code} {start.text[:300]}\n{dep.web.log}"
        landed = browser.get(dep.op.login(browser, start.headers["location"], USER))
        assert landed.status_code == 302, f"{landed.text[:300]}\n{dep.web.log}"
        for set_cookie in landed.headers.get_list("set-cookie"):
            jar.apply(set_cookie)
    assert jar.has_session, landed.headers.get_list("set-cookie")
    return jar


def refresh_outcomes(op: OidcProviderProcess) -> list[str]:
    """Every refresh_token grant since the last reset: "success" or its error code."""
    return list(op.stats()["refresh_token_outcomes"])


def wait_until_due(expiry: str) -> None:
    due = timestamp(expiry) - REFRESH_LEEWAY
    time.sleep(max(0.0, due + 0.3 - time.time()))


# -- the test --------------------------------------------------------------------------------------


def test_one_refresh_per_burst_and_the_session_survives(deployment: Deployment) -> None:
    dep, op = deployment, deployment.op
    authjs = dep.session_format == "authjs"

    # All workers answer: concurrent requests on fresh connections reach several of them.
    pids: set[str] = set()
    for _round in range(20):
        pids |= {a.pid for a in fire(dep, CookieJar(dep.session_cookie), CONCURRENT_REQUESTS, None) if a.pid}
        if len(pids) == WORKERS:
            break
    assert len(pids) >= 2, f"the requests reached only the workers {pids}\n{dep.web.log}"

    jar = sign_in(dep)
    first = httpx.get(dep.web.url("/api/me"), headers={"Cookie": jar.header}, timeout=15.0)
    assert first.status_code == 200 and first.json()["user"]["id"] == USER, first.text
    expiry = first.json()["access_token_expires"]
    assert time.time() < timestamp(expiry) - REFRESH_LEEWAY - 0.2, "signing in took longer than the token is fresh"

    table: list[str] = []
    problems: list[str] = []
    one_worker_bursts: list[int] = []
    for burst in range(1, BURSTS + 1):
        wait_until_due(expiry)
        row = f"burst {burst}:"
        if authjs:
            # Bearer callers alone, the token due: served with the session they carry, no grant.
            op.reset_stats()
            alone = fire(dep, jar, BEARER_ONLY_REQUESTS, bearer_every=1)
            outcomes = refresh_outcomes(op)
            row += (f" bearer-only refreshes {outcomes} statuses {dict(Counter(a.status for a in alone))}"
                    f" session errors {dict(Counter(str(a.error) for a in alone))};")
            if outcomes:
                problems.append(f"burst {burst}: Bearer callers alone made refresh grants {outcomes}")
            if not all(a.signed_in and a.expiry == expiry for a in alone):
                problems.append(f"burst {burst}: Bearer callers alone not all served the session they carry "
                                f"(token expiry {expiry}): {[a.brief for a in alone]}")

        op.reset_stats()
        answers = fire(dep, jar, CONCURRENT_REQUESTS, BEARER_EVERY if authjs else None)
        outcomes = refresh_outcomes(op)
        for answer in sorted(answers, key=lambda a: a.arrived):  # the browser's order
            for set_cookie in answer.set_cookies:
                jar.apply(set_cookie)
        workers = Counter(a.pid for a in answers)
        signed_in = sum(a.signed_in for a in answers)
        expiries = {a.expiry for a in answers if a.signed_in}
        newest = max(expiries, key=timestamp, default=None)
        markers = dict(Counter(str(a.error) for a in answers if a.signed_in and a.error is not None))
        row += (f" refresh grants {outcomes} ({outcomes.count('invalid_grant')} invalid_grant),"
                f" {signed_in}/{len(answers)} signed in{f' (session errors {markers})' if markers else ''},"
                f" statuses {dict(Counter(a.status for a in answers))},"
                f" {len(workers)} workers {sorted(workers.values(), reverse=True)}")
        table.append(row)

        if outcomes != ["success"]:
            problems.append(f"burst {burst}: refresh grants {outcomes}, not exactly one successful one")
        if signed_in != len(answers):
            failed = [a.brief for a in answers if not a.signed_in]
            problems.append(f"burst {burst}: {len(failed)} requests not signed in, e.g. {failed[:3]}")
        if newest is None or timestamp(newest) <= timestamp(expiry) or not expiries <= {expiry, newest}:
            problems.append(f"burst {burst}: access token expiries {expiries}, before the burst {expiry}")
        bearer_cookies = [a.set_cookies for a in answers if a.bearer and a.set_cookies]
        if bearer_cookies:
            problems.append(f"burst {burst}: Bearer callers got Set-Cookie headers {bearer_cookies[:2]}")
        if len(workers) < 2:
            # Still one grant and every request signed in (checked above), but this burst did not
            # test the processes' coordination: on a loaded 2-core machine the accept queue
            # sometimes hands a whole burst to one worker. Most bursts must reach several.
            one_worker_bursts.append(burst)
        if not jar.has_session:
            problems.append(f"burst {burst}: the browser lost its session cookie")
            break
        if newest is not None and timestamp(newest) > timestamp(expiry):
            expiry = newest

    # Still signed in, with the token of the last refresh.
    after = httpx.get(dep.web.url("/api/me"), headers={"Cookie": jar.header}, timeout=15.0)
    signed_in_after = Answer(0, False, after.status_code, after.json() if after.status_code == 200 else None).signed_in
    table.append(f"after: {after.status_code} {after.text[:120]}")
    if not signed_in_after:
        problems.append(f"the session is no longer signed in: {after.status_code} {after.text[:200]}")
    if len(one_worker_bursts) > BURSTS // 2:
        problems.append(f"bursts {one_worker_bursts} were each served by one worker: too few tested the coordination")
    report = "\n".join(table)
    print(f"{dep.server_name} x{WORKERS}, session format {dep.session_format}, workers seen {sorted(pids)}\n{report}")
    assert not problems, "\n".join(problems) + "\n" + report
