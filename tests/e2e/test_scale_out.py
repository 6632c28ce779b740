"""Server-side sessions that scale out: three app processes (two uvicorn instances of the Starlette
example and the Flask example under waitress) share one real redis-server through
`AUTH_SESSION_STORE`, and sign in with the real oidc-provider.

One browser session works on every process; 200 concurrent requests spread over the three, all
after the access token became due, refresh it exactly once at the provider; and a back-channel
logout delivered to one process ends the session on all of them.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from interop.provider import OidcProviderProcess, free_loopback_port

from .harness import ACCESS_TOKEN_TTL, REFRESH_LEEWAY, ExampleServer, example_env, start_provider, timestamp

SESSION_COOKIE = "logto.session-token"
REDIS_PREFIX = "logto:"
# Two uvicorn processes of the Starlette example and one waitress process of the Flask example.
INSTANCE_KINDS = ("starlette", "starlette", "flask")
SIGN_IN_THROUGH = 0  # the instance the browser signs in through
BACKCHANNEL_TO = 2  # the instance the provider sends the logout token to
CONCURRENT_REQUESTS = 200


class RedisServer:
    """`redis-server` on a free loopback port, without persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (scripts/install-system-deps.sh installs it)")
        self._dir = tempfile.TemporaryDirectory(prefix="logto-e2e-redis-")
        self.port = free_loopback_port()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self._dir.name], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def session_keys(self) -> list[str]:
        import redis

        client = redis.Redis.from_url(self.url, decode_responses=True)
        try:
            return [str(key) for key in client.keys(REDIS_PREFIX + "session:*")]
        finally:
            client.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self._dir.cleanup()


class Cluster:
    """The provider, Redis, and one example process per entry of INSTANCE_KINDS, all sharing
    AUTH_SECRET and AUTH_SESSION_STORE."""

    def __init__(self, redis_server: RedisServer) -> None:
        self.redis = redis_server
        self._workdir = tempfile.TemporaryDirectory(prefix="logto-e2e-scale-")
        self.provider: OidcProviderProcess | None = None
        self.instances: list[ExampleServer] = []
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        for _attempt in range(3):  # a free port can be taken between choosing and binding it
            ports = [free_loopback_port() for _ in INSTANCE_KINDS]
            if len(set(ports)) < len(ports):
                continue
            origins = [f"http://127.0.0.1:{port}" for port in ports]
            self.provider = start_provider(
                origins[SIGN_IN_THROUGH], ACCESS_TOKEN_TTL,
                backchannel_logout_uri=f"{origins[BACKCHANNEL_TO]}/api/auth/backchannel-logout")
            for kind, port, origin in zip(INSTANCE_KINDS, ports, origins, strict=True):
                env = example_env(origin, port, self.provider.issuer, AUTH_SESSION_STORE=self.redis.url)
                self.instances.append(ExampleServer(kind, port, origin, env, Path(self._workdir.name)))
            if all(instance.wait_until_up() for instance in self.instances):
                return
            logs = "\n".join(instance.log for instance in self.instances)
            self._stop_processes()
            if "in use" not in logs.lower():
                raise RuntimeError(f"an example exited while starting:\n{logs}")
        raise RuntimeError("no free ports for the example processes after 3 attempts")

    @property
    def op(self) -> OidcProviderProcess:
        assert self.provider is not None
        return self.provider

    @property
    def logs(self) -> str:
        return "\n".join(f"--- {i.kind} on {i.port}:\n{i.log}" for i in self.instances)

    def _stop_processes(self) -> None:
        for instance in self.instances:
            instance.stop()
        self.instances = []
        if self.provider is not None:
            self.provider.stop()
            self.provider = None

    def stop(self) -> None:
        self._stop_processes()
        self._workdir.cleanup()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    pytest.importorskip("redis", reason="pip package redis is not installed (the [redis] extra)")
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster(redis_server: RedisServer) -> Iterator[Cluster]:
    running = Cluster(redis_server)
    try:
        yield running
    finally:
        running.stop()


def me(instance: ExampleServer, cookie: str) -> httpx.Response:
    return httpx.get(instance.url("/api/me"), headers={"Cookie": cookie}, timeout=15.0)


def test_one_session_on_three_processes_refreshes_once_and_ends_everywhere(cluster: Cluster) -> None:
    op, instances = cluster.op, cluster.instances
    op.reset_stats()
    entry = instances[SIGN_IN_THROUGH]

    # -- sign in through one process ------------------------------------------------------------
    with httpx.Client(timeout=15.0, follow_redirects=False) as browser:
        start = browser.get(entry.url("/api/auth/signin"), params={"callbackUrl": "/api/me"})
        landed = browser.get(op.login(browser, start.headers["location"], "alice"))
        assert landed.status_code == 302, f"{landed.text}\n{cluster.logs}"
        session_id = browser.cookies[SESSION_COOKIE]
    # Cookies are not port-scoped: the browser sends this one to every process.
    cookie = f"{SESSION_COOKIE}={session_id}"
    assert len(session_id) < 200, "the cookie should carry only an encrypted session id"
    assert len(cluster.redis.session_keys()) == 1

    # -- the same session on every process ------------------------------------------------------
    first = [me(instance, cookie) for instance in instances]
    assert [response.status_code for response in first] == [200] * len(instances), cluster.logs
    bodies = [response.json() for response in first]
    assert {body["user"]["id"] for body in bodies} == {"alice"}
    assert len({body["access_token_expires"] for body in bodies}) == 1
    old_expiry = timestamp(bodies[0]["access_token_expires"])
    due = old_expiry - REFRESH_LEEWAY
    assert time.time() < due - 0.2, "signing in took longer than the access token stays fresh"
    assert op.stats()["grants"]["refresh_token"] == 0

    # -- 200 concurrent requests over the three processes, all after the refresh point ----------
    time.sleep(max(0.0, due + 0.3 - time.time()))
    results: list[tuple[int, Any]] = [(0, "not run")] * CONCURRENT_REQUESTS
    barrier = threading.Barrier(CONCURRENT_REQUESTS)

    def call(index: int) -> None:
        instance = instances[index % len(instances)]
        with httpx.Client(timeout=30.0) as client:  # one connection per request
            try:
                barrier.wait(timeout=30)
                response = client.get(instance.url("/api/me"), headers={"Cookie": cookie})
                results[index] = (response.status_code, response.json())
            except Exception as exc:
                results[index] = (0, f"{instance.kind}:{instance.port}: {exc!r}")

    threads = [threading.Thread(target=call, args=(index,)) for index in range(CONCURRENT_REQUESTS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.monotonic() - started
    failures = [(i, status, body) for i, (status, body) in enumerate(results) if status != 200]
    assert not failures, f"{len(failures)} failed, e.g. {failures[:5]}\n{cluster.logs}"
    assert all(body["user"]["id"] == "alice" and body["error"] is None for _, body in results)
    # Every request saw the one refreshed token, whichever process served it.
    expiries = {body["access_token_expires"] for _, body in results}
    assert len(expiries) == 1 and timestamp(expiries.pop()) > old_expiry, expiries
    stats = op.stats()
    assert stats["grants"]["refresh_token"] == 1, (stats, elapsed)
    assert stats["refresh_token_outcomes"] == ["success"]
    after = [me(instance, cookie).json() for instance in instances]
    assert {body["access_token_expires"] for body in after} == {results[0][1]["access_token_expires"]}
    assert op.stats()["grants"]["refresh_token"] == 1

    # -- back-channel logout to one process ends the session on all of them ----------------------
    delivered = op.trigger_backchannel_logout("alice")
    assert delivered.status_code == 200, f"{delivered.text}\n{cluster.logs}"
    assert "back-channel logout ended 1 sessions" in instances[BACKCHANNEL_TO].log
    for instance in instances:
        gone = me(instance, cookie)
        assert gone.status_code == 401 and gone.json() == {"error": "unauthorized"}, (instance.kind, gone.text)
        session = httpx.get(instance.url("/api/auth/session"), headers={"Cookie": cookie}, timeout=15.0)
        assert session.json() is None
        home = httpx.get(instance.url("/"), headers={"Cookie": cookie}, timeout=15.0)
        assert ">Sign in<" in home.text and "Sign out" not in home.text
    assert cluster.redis.session_keys() == []
    assert op.stats()["grants"]["refresh_token"] == 1
