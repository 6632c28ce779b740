"""Real Redis deployments for the whole run, each started once, on loopback, in a temp dir, on
free ports, with no persistence; `tests/conftest.py` re-exports the fixtures.

- `redis_server` / `redis_url`: one standalone `redis-server` (the store tests, the security suite);
- `redis_cluster`: a Redis Cluster of 6 nodes (3 masters, 3 replicas);
- `redis_sentinel`: a master, its replica and 3 sentinels watching them (service `mymaster`);
- `redis_tls`: a `redis-server` that speaks only TLS, with a throw-away CA and certificate.

Each is started by the first test that asks for it. `redis_deployment_url` is a test's emptied
deployment by name. Failover tests kill masters: `heal()` restarts what they killed and waits
until the deployment answers again, so the next test finds it whole.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DEPLOYMENTS = ("standalone", "cluster", "sentinel", "tls")
SERVICE = "mymaster"
# Short timeouts make a failover take a few seconds.
NODE_TIMEOUT_MS = 1000
DOWN_AFTER_MS = 1000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (scripts/install-system-deps.sh installs it)")
    return found


def _client(port: int, **options: Any) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2, **options)


def _wait(condition: Any, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not happen in {seconds:g} s (last error: {last!r})")


class _Node:
    """One redis-server (or sentinel) process on `port`, started with `args`."""

    def __init__(self, directory: Path, port: int, args: list[str], binary: str = "redis-server") -> None:
        self.port = port
        self.directory = directory
        self.args = args
        self.binary = _binary(binary)
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self.process = subprocess.Popen([self.binary, *self.args], cwd=self.directory, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Die as a crashed machine would: no goodbye to the replicas or the cluster."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None


def _server_args(port: int, *extra: str) -> list[str]:
    # A replica's first sync starts at once (the default waits 5 s for more replicas).
    return ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", ".",
            "--repl-diskless-sync-delay", "0", *extra]


class RedisServer:
    def __init__(self) -> None:
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="logto-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = _binary("redis-server")
        if not self.port:
            self.port = free_port()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self._dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def shutdown_keeping_data(self) -> None:
        """Stop the server as an outage would, with its data saved for the restart."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
            conn.sendall(b"SHUTDOWN SAVE\r\n")
            conn.recv(64)
        assert self.process is not None
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def flush(self) -> None:
        if self.process is None:
            self.start()
        _client(self.port).flushall()


class RedisCluster:
    """6 nodes: `redis-cli --cluster create` makes 3 masters and gives each a replica."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="logto-redis-cluster-"))
        self.nodes: list[_Node] = []
        for _ in range(6):
            port = free_port()
            self.nodes.append(_Node(self._dir / str(port), port, _server_args(
                # The bus port's default, port + 10000, may be past 65535.
                port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(free_port()),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--cluster-replica-validity-factor", "0")))

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:3])

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            _wait(lambda node=node: _client(node.port).ping(), f"cluster node {node.port} answering")
        created = subprocess.run(
            [_binary("redis-cli"), "--cluster", "create", *(f"127.0.0.1:{node.port}" for node in self.nodes),
             "--cluster-replicas", "1", "--cluster-yes"], capture_output=True, text=True, timeout=60)
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout}{created.stderr}")
        self.wait_healthy()

    def _info(self, node: _Node) -> dict[str, Any]:
        return dict(_client(node.port).info("replication"))

    def masters(self) -> list[_Node]:
        return [node for node in self.nodes if node.running and self._info(node)["role"] == "master"]

    def wait_healthy(self) -> None:
        """Every node up, the cluster ok, and every master with a replica in sync."""
        def healthy() -> bool:
            for node in self.nodes:
                state = _client(node.port).execute_command("CLUSTER", "INFO")
                if b"cluster_state:ok" not in state:
                    return False
            masters = self.masters()
            return len(masters) == 3 and all(self._info(m).get("connected_slaves") == 1 for m in masters) and all(
                self._info(n).get("master_link_status") == "up" for n in self.nodes if n not in masters)
        _wait(healthy, "cluster ok with 3 masters and 3 replicas", 30)

    def flush(self) -> None:
        if any(not node.running for node in self.nodes):
            self.heal()
        for master in self.masters():
            _client(master.port).flushall()

    def heal(self) -> None:
        """Restart killed nodes (they rejoin as replicas) and wait until all is well."""
        for node in self.nodes:
            if not node.running:
                node.start()
        self.wait_healthy()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


class RedisSentinel:
    """A master, its replica and 3 sentinels (quorum 2) watching them as `mymaster`."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="logto-redis-sentinel-"))
        master, replica = free_port(), free_port()
        self.data = [_Node(self._dir / str(master), master, _server_args(master)),
                     _Node(self._dir / str(replica), replica, _server_args(replica, "--replicaof", "127.0.0.1",
                                                                           str(master)))]
        self.sentinels: list[_Node] = []
        # Each sentinel is told the others and the replica up front (they would otherwise find
        # them through hello messages, which takes several seconds).
        ids = {free_port(): os.urandom(20).hex() for _ in range(3)}
        for port, myid in ids.items():
            directory = self._dir / str(port)
            directory.mkdir(parents=True)
            known = "".join(f"sentinel known-sentinel {SERVICE} 127.0.0.1 {other} {other_id}\n"
                            for other, other_id in ids.items() if other != port)
            (directory / "sentinel.conf").write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\nsentinel myid {myid}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
                f"sentinel known-replica {SERVICE} 127.0.0.1 {replica}\n{known}")
            self.sentinels.append(_Node(directory, port, ["sentinel.conf"], binary="redis-sentinel"))

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels) + f"/{SERVICE}/0"

    def start(self) -> None:
        for node in [*self.data, *self.sentinels]:
            node.start()
        self.wait_healthy()

    def master(self) -> _Node:
        _host, port = _client(self.sentinels[0].port).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return next(node for node in self.data if node.port == int(port))

    def wait_healthy(self) -> None:
        """Every sentinel agreeing on one master that answers, knowing its replica (in sync) and
        the two other sentinels (so that they can vote a failover)."""
        def healthy() -> bool:
            masters = set()
            for sentinel in self.sentinels:
                client = _client(sentinel.port, decode_responses=True)
                state = client.execute_command("SENTINEL", "MASTER", SERVICE)
                fields = dict(zip(state[::2], state[1::2], strict=True)) if isinstance(state, list) else state
                if "s_down" in fields["flags"] or int(fields["num-other-sentinels"]) < 2 or int(
                        fields["num-slaves"]) < 1:
                    return False
                masters.add(int(fields["port"]))
                replicas = client.execute_command("SENTINEL", "REPLICAS", SERVICE)
                live = [r for r in replicas if "s_down" not in (r["flags"] if isinstance(r, dict) else
                                                                dict(zip(r[::2], r[1::2], strict=True))["flags"])]
                if not live:
                    return False
            if len(masters) != 1:
                return False
            port = masters.pop()
            info = dict(_client(port).info("replication"))
            return info["role"] == "master" and info.get("connected_slaves") == 1 and all(
                dict(_client(n.port).info("replication")).get("master_link_status") == "up"
                for n in self.data if n.port != port)
        _wait(healthy, "sentinels agreeing on a master with a replica in sync", 40)

    def flush(self) -> None:
        if any(not node.running for node in self.data):
            self.heal()
        _client(self.master().port).flushall()

    def heal(self) -> None:
        """Restart a killed node: the sentinels make it a replica of the current master."""
        for node in self.data:
            if not node.running:
                node.start()
        self.wait_healthy()

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data]:
            node.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


class RedisTLS:
    """A redis-server on a TLS port only (`port 0`), its certificate signed by a throw-away CA."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="logto-redis-tls-"))
        self.ca = self._dir / "ca.pem"
        port = free_port()
        _write_certificates(self._dir)
        self.node = _Node(self._dir / "data", port, [
            "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", ".", "--tls-cert-file", str(self._dir / "server.pem"),
            "--tls-key-file", str(self._dir / "server.key"), "--tls-ca-cert-file", str(self.ca),
            "--tls-auth-clients", "no"])

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.node.port}/0?ssl_ca_certs={self.ca}&ssl_cert_reqs=required"

    def _client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=2)

    def start(self) -> None:
        self.node.start()
        _wait(lambda: self._client().ping(), "redis-server answering over TLS")

    def flush(self) -> None:
        self._client().flushall()

    def stop(self) -> None:
        self.node.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def _write_certificates(directory: Path) -> None:
    """A CA, and a server certificate it signed for 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "logto-middleware test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
              .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                          x509.DNSName("localhost")]), critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "server.key"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_file, 0o600)


def _started(deployment: Any) -> Iterator[Any]:
    try:
        deployment.start()
    except BaseException:
        deployment.stop()
        raise
    yield deployment
    deployment.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared server's URL, emptied for this test: no test sees another's keys."""
    redis_server.flush()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    yield from _started(RedisCluster())


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinel]:
    yield from _started(RedisSentinel())


@pytest.fixture(scope="session")
def redis_tls() -> Iterator[RedisTLS]:
    yield from _started(RedisTLS())


_FIXTURES = {"standalone": "redis_server", "cluster": "redis_cluster", "sentinel": "redis_sentinel",
             "tls": "redis_tls"}


def deployment_url(request: pytest.FixtureRequest, name: str) -> str:
    """The URL of deployment `name` (one of DEPLOYMENTS), emptied for this test."""
    deployment = request.getfixturevalue(_FIXTURES[name])
    deployment.flush()
    return str(deployment.url)
