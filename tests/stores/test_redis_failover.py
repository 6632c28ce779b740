"""A master dies and a replica takes over (Redis Cluster, Sentinel), through both middlewares:
during the gap a request is answered (signed in) or gets the 503 page with Retry-After, never an
anonymous user or a cleared cookie; afterwards the same middleware, never restarted, serves every
session that was replicated before the failure, and signs in new ones (its scripts are loaded
again on the new master)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from conftest import ORIGIN, Clock, Harness
from redis_support import RedisCluster, RedisSentinel, deployment_url

from logto_middleware._sessions.server import user_slot
from logto_middleware.stores import RedisStore
from logto_middleware.testing import FakeLogto

USERS = ("alice", "bob", "carol", "dave")
# Time for the replica to take over (node timeout / down-after 1 s, then an election) and for
# the client to find the new master.
RECOVERY_SECONDS = 30


def replicated(deployment: RedisCluster | RedisSentinel) -> None:
    """Wait until every master's writes reached its replica (the test's part, not the store's:
    Redis replicates asynchronously, and a write of the last instant may be lost)."""
    import redis

    masters = deployment.masters() if isinstance(deployment, RedisCluster) else [deployment.master()]
    for master in masters:
        client = redis.Redis(host="127.0.0.1", port=master.port)
        assert client.execute_command("WAIT", 1, 5000) >= 1


def master_of(deployment: RedisCluster | RedisSentinel, sub: str) -> Any:
    """The node that holds user `sub`'s sessions."""
    if isinstance(deployment, RedisSentinel):
        return deployment.master()
    import redis.cluster

    client = redis.cluster.RedisCluster(host="127.0.0.1", port=deployment.nodes[0].port)
    try:
        port = client.get_node_from_key(user_slot(sub)).port
    finally:
        client.close()
    return next(node for node in deployment.nodes if node.port == port)


def outcome(response: httpx.Response) -> str:
    """"in" (signed in), "503" (the store-unavailable page, with Retry-After), or what went wrong."""
    cleared = [c for c in response.headers.get_list("set-cookie") if "Max-Age=0" in c]
    if cleared:
        return f"cookie cleared: {cleared}"
    if response.status_code == 503:
        return "503" if response.headers.get("retry-after") else "503 without Retry-After"
    if response.status_code == 200 and response.json().get("authenticated") is True:
        return "in"
    return f"{response.status_code}: {response.text[:200]}"


@pytest.mark.parametrize("deployment_name", ["cluster", "sentinel"])
def test_a_failover_signs_nobody_out_and_recovers_without_restart(
        request: pytest.FixtureRequest, kind: str, fake: FakeLogto, clock: Clock, deployment_name: str) -> None:
    url = deployment_url(request, deployment_name)
    deployment: RedisCluster | RedisSentinel = request.getfixturevalue(f"redis_{deployment_name}")
    harness = Harness(kind, fake, clock, store=RedisStore.from_url(url, timeout=0.5))
    cookies = {}
    for user in USERS:
        harness.client = harness.browser()
        harness.sign_in(user)
        cookies[user] = harness.client.cookies["logto.session-token"]
    browser = harness.browser()

    def visit(user: str) -> str:
        return outcome(browser.get("/", headers={"cookie": f"logto.session-token={cookies[user]}"}))

    assert {visit(user) for user in USERS} == {"in"}
    replicated(deployment)
    victim = master_of(deployment, fake._subject("alice"))
    try:
        victim.kill()
        seen: dict[str, int] = {}
        deadline = time.monotonic() + RECOVERY_SECONDS
        streak = 0
        while streak < 3:  # every session signed in, three rounds in a row
            assert time.monotonic() < deadline, f"no recovery in {RECOVERY_SECONDS} s: {seen}"
            results = [visit(user) for user in USERS]
            for result in results:
                seen[result] = seen.get(result, 0) + 1
            assert set(results) <= {"in", "503"}, results
            streak = streak + 1 if set(results) == {"in"} else 0
            time.sleep(0.1)
        # New sessions are written (and the scripts loaded again) on the new master.
        harness.client = harness.browser()
        harness.sign_in("erin")
        assert harness.me()["authenticated"] is True
        harness.client.post("/api/auth/signout", data={"everywhere": "1"}, headers={"origin": ORIGIN})
        assert harness.client.get("/").json()["authenticated"] is False
        assert visit("alice") == "in"
    finally:
        deployment.heal()


def test_a_cluster_that_lost_a_slot_answers_503_and_keeps_the_cookie(
        request: pytest.FixtureRequest, kind: str, fake: FakeLogto, clock: Clock) -> None:
    """A master and its replica both gone (no failover possible): the user's requests get the
    503 page with Retry-After, in bounded time, and keep their cookie."""
    url = deployment_url(request, "cluster")
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    harness = Harness(kind, fake, clock, store=RedisStore.from_url(url, timeout=0.5))
    harness.sign_in("alice")
    cookie = harness.client.cookies["logto.session-token"]
    master = master_of(cluster, fake._subject("alice"))
    import redis

    def replica_of_master(node: Any) -> bool:
        info = dict(redis.Redis(host="127.0.0.1", port=node.port).info("replication"))
        return info["role"] == "slave" and int(info["master_port"]) == master.port

    doomed = [master, *(node for node in cluster.nodes if node is not master and replica_of_master(node))]
    assert len(doomed) == 2
    try:
        for node in doomed:
            node.kill()
        started = time.monotonic()
        response = harness.browser().get("/", headers={"cookie": f"logto.session-token={cookie}"})
        assert time.monotonic() - started < 15
        assert outcome(response) == "503"
        assert "still signed in" in response.text
    finally:
        cluster.heal()
