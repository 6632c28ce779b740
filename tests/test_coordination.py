"""Refresh coordinated across processes: several middlewares ("workers", each with its own
in-process single flight) on one FakeLogto that rotates the refresh token on every use and
revokes the grant when a spent one comes back, sharing a lock directory."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Clock, Harness

from logto_middleware import LogtoConfig, LogtoConfigError, MemoryStore
from logto_middleware.coordination import DirectoryLock, RefreshCoordinator, default_lock_directory
from logto_middleware.errors import OAuthError, StoreUnavailable
from logto_middleware.flow import run_without_io
from logto_middleware.session import SessionData
from logto_middleware.testing import FakeLogto

WORKERS = 4


@pytest.fixture
def fake(clock: Clock) -> FakeLogto:
    return FakeLogto(clock=clock, rotate_refresh_token="always")


def workers(kind: str, fake: FakeLogto, clock: Clock, lock: str, count: int = WORKERS) -> list[Harness]:
    return [Harness(kind, fake, clock, refresh_lock=lock) for _ in range(count)]


def signed_in_cookie(first: Harness) -> tuple[str, str]:
    first.sign_in("alice")
    name = first.session_cookie_names()[0]
    return name, str(first.client.cookies[name])


def newest_cookie(worker: Harness, name: str, cookie: str) -> str:
    """The cookie the browser holds after its next request (the refreshed one, if written)."""
    client = worker.browser()
    client.cookies.set(name, cookie)
    return client.get("/").cookies.get(name) or cookie


def request_as(worker: Harness, name: str, value: str) -> dict[str, Any]:
    """A request to `worker` carrying exactly this cookie (a browser's request on a fresh connection)."""
    client = worker.browser()
    client.cookies.set(name, value)
    response = client.get("/")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_old_cookie_on_another_worker_takes_the_recorded_refresh(kind: str, fake: FakeLogto, clock: Clock,
                                                                 tmp_path: Path) -> None:
    a, b = workers(kind, fake, clock, str(tmp_path), 2)
    name, cookie = signed_in_cookie(a)
    clock.advance(fake.access_token_ttl - 30)
    on_a = request_as(a, name, cookie)
    on_b = request_as(b, name, cookie)  # the same (old) cookie on another process, moments later
    assert on_a["authenticated"] and on_b["authenticated"]
    assert on_b["access_token"] == on_a["access_token"]
    assert on_b["error"] is None
    assert fake.counts["token:refresh_token"] == 1
    # The grant is intact: the next refresh, with the rotated token, succeeds.
    clock.advance(fake.access_token_ttl)
    b.client.cookies.set(name, cookie)
    assert request_as(b, name, cookie)["authenticated"]


def burst(pool: list[Harness], name: str, cookie: str, size: int) -> list[dict[str, Any]]:
    """`size` simultaneous requests with one cookie, spread over the workers."""
    results: list[dict[str, Any]] = []
    barrier = threading.Barrier(size)

    def one(worker: Harness) -> None:
        barrier.wait()
        results.append(request_as(worker, name, cookie))

    threads = [threading.Thread(target=one, args=(pool[i % len(pool)],)) for i in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_requests_over_workers_send_one_grant(kind: str, fake: FakeLogto, clock: Clock,
                                                        tmp_path: Path) -> None:
    pool = workers(kind, fake, clock, str(tmp_path))
    name, cookie = signed_in_cookie(pool[0])
    for round_ in range(3):
        clock.advance(fake.access_token_ttl - 30)
        results = burst(pool, name, cookie, 4 * WORKERS)
        assert len(results) == 4 * WORKERS
        assert all(r["authenticated"] and r["error"] is None for r in results), results
        assert len({r["access_token"] for r in results}) == 1
        assert fake.counts["token:refresh_token"] == round_ + 1
        cookie = newest_cookie(pool[0], name, cookie)


def test_without_coordination_workers_trip_reuse_detection(kind: str, fake: FakeLogto, clock: Clock) -> None:
    # What the lock prevents (and why it is on by default): each process refreshes on its own,
    # the second presents a spent refresh token and the provider revokes the grant.
    a, b = workers(kind, fake, clock, "off", 2)
    name, cookie = signed_in_cookie(a)
    clock.advance(fake.access_token_ttl - 30)
    assert request_as(a, name, cookie)["authenticated"]
    assert not request_as(b, name, cookie)["authenticated"]
    assert fake.counts["token:refresh_token"] == 2


def test_a_refused_grant_is_recorded_for_the_others(kind: str, fake: FakeLogto, clock: Clock,
                                                   tmp_path: Path) -> None:
    a, b = workers(kind, fake, clock, str(tmp_path), 2)
    name, cookie = signed_in_cookie(a)
    fake.token_response_hook = lambda body: httpx.Response(400, json={"error": "invalid_grant"})
    clock.advance(fake.access_token_ttl - 30)
    assert not request_as(a, name, cookie)["authenticated"]
    assert not request_as(b, name, cookie)["authenticated"]
    assert fake.counts["token:refresh_token"] == 1  # b did not present the dead token again


def test_a_refresh_answered_with_a_forged_id_token_is_recorded_for_the_others(
        kind: str, fake: FakeLogto, clock: Clock, tmp_path: Path) -> None:
    a, b = workers(kind, fake, clock, str(tmp_path), 2)
    name, cookie = signed_in_cookie(a)

    def forged(body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, json={**body, "id_token": fake.sign_id_token(fake.make_id_token_claims("mallory"))})

    fake.token_response_hook = forged
    clock.advance(fake.access_token_ttl - 30)
    assert not request_as(a, name, cookie)["authenticated"]
    assert not request_as(b, name, cookie)["authenticated"]
    assert fake.counts["token:refresh_token"] == 1  # b did not present the spent token


def test_records_are_sealed_and_private(tmp_path: Path) -> None:
    lock = DirectoryLock(tmp_path / "locks")
    coordinator = RefreshCoordinator(lock, ["s" * 32])
    data = SessionData(claims={"sub": "u"}, expires_at=2_000_000_000, updated_at=1, access_token="new-access-token",
                       refresh_token="new-refresh-token")
    key = ("old-refresh-token", "old-access-token", "")
    assert run_without_io(coordinator.run(key, data, lambda d: _returns(d))) == data
    directory = tmp_path / "locks"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = list(directory.iterdir())
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    for f in files:
        raw = f.read_bytes()
        for secret in (b"new-access-token", b"new-refresh-token", b"old-refresh-token", b"old-access-token"):
            assert secret not in raw and secret not in f.name.encode()
    # Another process of the same app reads it; an app with another secret does not.
    again = RefreshCoordinator(DirectoryLock(directory), ["s" * 32])
    assert run_without_io(again.run(key, data, _must_not_grant)) == data
    other = RefreshCoordinator(DirectoryLock(directory), ["t" * 32])
    assert run_without_io(other.run(key, data, lambda d: _returns(d.with_changes(scope="x")))).scope == "x"


def test_a_held_lock_makes_the_others_wait_then_take_the_record(tmp_path: Path) -> None:
    lock = DirectoryLock(tmp_path)
    name = RefreshCoordinator(lock, ["s" * 32]).name(("rt", "at", ""))
    assert run_without_io(lock.acquire_lock(name, "holder", 10))
    assert not run_without_io(DirectoryLock(tmp_path).acquire_lock(name, "other", 10))
    run_without_io(lock.release_lock(name, "holder"))
    assert run_without_io(DirectoryLock(tmp_path).acquire_lock(name, "other", 10))


def test_a_dead_holder_releases_its_lock(tmp_path: Path) -> None:
    name = "refresh:dead-holder"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the holder: takes the lock, says so, dies without releasing it
        os.close(read)
        taken = run_without_io(DirectoryLock(tmp_path).acquire_lock(name, "child", 10))
        os.write(write, b"1" if taken else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    assert run_without_io(DirectoryLock(tmp_path).acquire_lock(name, "parent", 10))


def test_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(StoreUnavailable, match="writable by others"):
        run_without_io(DirectoryLock(shared).get("refresh:x"))


def test_an_unusable_lock_falls_back_to_the_grant_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    coordinator = RefreshCoordinator(DirectoryLock(shared), ["s" * 32])
    data = SessionData(claims={"sub": "u"}, expires_at=2_000_000_000, updated_at=1)
    assert run_without_io(coordinator.run(("a", "b", ""), data, lambda d: _returns(d))) == data
    assert "refresh lock unavailable" in caplog.text


def test_any_session_store_coordinates(tmp_path: Path) -> None:
    store = MemoryStore()
    first, second = RefreshCoordinator(store, ["s" * 32]), RefreshCoordinator(store, ["s" * 32])
    data = SessionData(claims={"sub": "u"}, expires_at=2_000_000_000, updated_at=1, access_token="n")
    key = ("rt", "at", "")
    assert run_without_io(first.run(key, data, lambda d: _returns(d))) == data
    assert run_without_io(second.run(key, data, _must_not_grant)) == data

    def refused(d: SessionData) -> Any:
        raise OAuthError("invalid_grant")
        yield

    with pytest.raises(OAuthError):
        run_without_io(first.run(("rt2", "at2", ""), data, refused))
    with pytest.raises(OAuthError, match="invalid_grant"):
        run_without_io(second.run(("rt2", "at2", ""), data, _must_not_grant))


def test_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    base = {"AUTH_LOGTO_ISSUER": "https://t.logto.app/oidc", "AUTH_LOGTO_ID": "id", "AUTH_LOGTO_SECRET": "s",
            "AUTH_SECRET": "x" * 32}
    assert LogtoConfig.from_env(base).refresh_lock == ""
    assert LogtoConfig.from_env({**base, "AUTH_REFRESH_LOCK": "OFF"}).refresh_lock == "off"
    assert LogtoConfig.from_env({**base, "AUTH_REFRESH_LOCK": str(tmp_path)}).refresh_lock == str(tmp_path)
    assert LogtoConfig.from_env({**base, "AUTH_REFRESH_LOCK": "redis://h:6379/0"}).refresh_lock == "redis://h:6379/0"
    with pytest.raises(LogtoConfigError, match="AUTH_REFRESH_LOCK"):
        LogtoConfig.from_env({**base, "AUTH_REFRESH_LOCK": "relative/dir"})
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert default_lock_directory() == tmp_path / "logto-middleware"


def _returns(value: SessionData) -> Any:
    return value
    yield


def _must_not_grant(data: SessionData) -> Any:
    raise AssertionError("a second grant for the same tokens")
    yield
