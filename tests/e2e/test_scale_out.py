"""Server-side sessions that scale out: three app processes (two uvicorn instances of the Starlette
example and the Flask example under waitress) share one real Redis through `AUTH_SESSION_STORE`
(a standalone server, a Redis Cluster of 3 masters and 3 replicas, or a master and replica behind
3 sentinels), and sign in with the real oidc-provider.

One browser session works on every process; 200 concurrent requests spread over the three, all
after the access token became due, refresh it exactly once at the provider; on a cluster or
Sentinel, the master holding the session is killed and its replica takes over: every request in
the gap is answered (signed in) or gets a 503 with Retry-After, never a 401 or a cleared cookie,
and the processes, never restarted, serve the session again; a back-channel logout (by `sid`)
delivered to one process ends the session on all of them; sign-out everywhere through one
process ends every session of the user on all of them; and a user's devices listed through one
process can be ended through another (the refresh token revoked at the provider), at once on all.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from interop.provider import OidcProviderProcess, free_loopback_port
from redis_support import deployment_url

from .harness import ACCESS_TOKEN_TTL, REFRESH_LEEWAY, ExampleServer, example_env, start_provider, timestamp

SESSION_COOKIE = "logto.session-token"
REDIS_PREFIX = "logto:"
# Two uvicorn processes of the Starlette example and one waitress process of the Flask example.
INSTANCE_KINDS = ("starlette", "starlette", "flask")
SIGN_IN_THROUGH = 0  # the instance the browser signs in through
BACKCHANNEL_TO = 2  # the instance the provider sends the logout token to
CONCURRENT_REQUESTS = 200
# A replica takes over in a few seconds (node timeout / down-after 1 s, then an election).
FAILOVER_SECONDS = 30


class Deployment:
    """One of the test run's Redis deployments (tests/redis_support.py), emptied for this test."""

    def __init__(self, request: pytest.FixtureRequest, name: str) -> None:
        self.name = name
        self.url = deployment_url(request, name)
        self.running: Any = request.getfixturevalue({"standalone": "redis_server", "cluster": "redis_cluster",
                                                     "sentinel": "redis_sentinel"}[name])

    def _masters(self) -> list[int]:
        if self.name == "standalone":
            return [self.running.port]
        if self.name == "sentinel":
            return [self.running.master().port]
        return [node.port for node in self.running.masters()]

    def session_keys(self) -> list[str]:
        import redis

        keys: list[str] = []
        for port in self._masters():
            client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
            try:
                keys += [str(key) for key in client.keys(REDIS_PREFIX + "session:*")]
            finally:
                client.close()
        return keys

    def kill_master_of(self, session_key: str) -> None:
        """Wait until every write reached the replicas (Redis replicates asynchronously: the
        store never waits for it), then kill the master that holds `session_key`."""
        import redis
        import redis.cluster

        for port in self._masters():
            assert redis.Redis(host="127.0.0.1", port=port).execute_command("WAIT", 1, 5000) >= 1
        if self.name == "sentinel":
            self.running.master().kill()
            return
        client = redis.cluster.RedisCluster(host="127.0.0.1", port=self.running.nodes[0].port)
        try:
            port = client.get_node_from_key(session_key).port
        finally:
            client.close()
        next(node for node in self.running.nodes if node.port == port).kill()


class Cluster:
    """The provider, Redis, and one example process per entry of INSTANCE_KINDS, all sharing
    AUTH_SECRET and AUTH_SESSION_STORE."""

    def __init__(self, redis_deployment: Deployment) -> None:
        self.redis = redis_deployment
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


@pytest.fixture(params=["standalone", "cluster", "sentinel"])
def redis_deployment(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    deployment = Deployment(request, request.param)
    try:
        yield deployment
    finally:
        if deployment.name != "standalone":
            deployment.running.heal()


@pytest.fixture
def cluster(redis_deployment: Deployment) -> Iterator[Cluster]:
    running = Cluster(redis_deployment)
    try:
        yield running
    finally:
        running.stop()


def sign_in(cluster: Cluster, browser: httpx.Client) -> str:
    """Sign alice in through the sign-in instance; the session cookie's value."""
    entry = cluster.instances[SIGN_IN_THROUGH]
    start = browser.get(entry.url("/api/auth/signin"), params={"callbackUrl": "/api/me"})
    landed = browser.get(cluster.op.login(browser, start.headers["location"], "alice"))
    assert landed.status_code == 302, f"{landed.text}\n{cluster.logs}"
    return browser.cookies[SESSION_COOKIE]


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

    # -- the master holding the session dies; its replica takes over -----------------------------
    if cluster.redis.name != "standalone":
        [key] = cluster.redis.session_keys()
        cluster.redis.kill_master_of(key)
        answered: dict[int, int] = {}
        deadline, streak = time.monotonic() + FAILOVER_SECONDS, 0
        while streak < 3:  # every process serves the session, three rounds in a row
            assert time.monotonic() < deadline, f"no recovery in {FAILOVER_SECONDS} s: {answered}\n{cluster.logs}"
            served = []
            for instance in instances:
                response = me(instance, cookie)
                answered[response.status_code] = answered.get(response.status_code, 0) + 1
                cleared = [c for c in response.headers.get_list("set-cookie") if "Max-Age=0" in c]
                signed_in = response.status_code == 200 and response.json()["user"]["id"] == "alice"
                waiting = response.status_code == 503 and response.headers.get("retry-after")
                assert (signed_in or waiting) and not cleared, (instance.kind, response.status_code, response.text)
                served.append(signed_in)
            streak = streak + 1 if all(served) else 0
            time.sleep(0.1)
        # The access token came due again meanwhile (it lives 5 s past the refresh point): one
        # more refresh, with the rotated token, never a spent one presented again.
        stats = op.stats()
        assert stats["refresh_token_outcomes"] == ["success"] * stats["grants"]["refresh_token"], stats
        # Every process serves the one current token. The token lives 5 s: a refresh may land
        # between the three reads, so read again before calling it a disagreement.
        for _attempt in range(3):
            expiries = {me(instance, cookie).json()["access_token_expires"] for instance in instances}
            if len(expiries) == 1:
                break
        assert len(expiries) == 1, expiries
    grants = op.stats()["grants"]["refresh_token"]

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
    assert op.stats()["grants"]["refresh_token"] == grants

    # -- sign-out everywhere through one process ends every session of the user on all of them ---
    with httpx.Client(timeout=15.0, follow_redirects=False) as laptop, \
            httpx.Client(timeout=15.0, follow_redirects=False) as phone:
        cookies = [f"{SESSION_COOKIE}={sign_in(cluster, browser)}" for browser in (laptop, phone)]
        assert [me(instance, c).status_code for c in cookies for instance in instances] == [200] * 6
        other = instances[BACKCHANNEL_TO]  # not the one signed in through
        csrf = phone.get(other.url("/api/auth/csrf")).json()["csrfToken"]
        signout = phone.post(other.url("/api/auth/signout"), data={"csrfToken": csrf, "everywhere": "1"})
        assert signout.status_code == 302, f"{signout.text}\n{cluster.logs}"
    assert [me(instance, c).status_code for c in cookies for instance in instances] == [401] * 6
    assert cluster.redis.session_keys() == []

    # -- a user's devices: listed through one process, one ended through another -----------------
    lister, ender = instances[0], instances[BACKCHANNEL_TO]
    with httpx.Client(timeout=15.0, follow_redirects=False) as laptop, \
            httpx.Client(timeout=15.0, follow_redirects=False) as phone:
        cookies = [f"{SESSION_COOKIE}={sign_in(cluster, browser)}" for browser in (laptop, phone)]
        listed = httpx.get(lister.url("/api/auth/sessions"), headers={"Cookie": cookies[0]}, timeout=15.0)
        assert listed.status_code == 200, f"{listed.text}\n{cluster.logs}"
        devices = listed.json()
        assert devices["serverSide"] is True and len(devices["sessions"]) == 2, devices
        assert [device["current"] for device in devices["sessions"]] == [True, False]  # the current one first
        phone_handle = devices["sessions"][1]["id"]
        csrf = laptop.get(ender.url("/api/auth/csrf")).json()["csrfToken"]
        ended = laptop.post(ender.url("/api/auth/sessions/end"), json={"session": phone_handle},
                            headers={"X-CSRF-Token": csrf})
        assert ended.status_code == 200, f"{ended.text}\n{cluster.logs}"
        assert ended.json() == {"ended": 1, "revoked": 1}
    # The phone is signed out on every process at once; the laptop is not.
    assert [me(instance, cookies[1]).status_code for instance in instances] == [401] * len(instances)
    assert [me(instance, cookies[0]).status_code for instance in instances] == [200] * len(instances)
    assert len(cluster.redis.session_keys()) == 1
