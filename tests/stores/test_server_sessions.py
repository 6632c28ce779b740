"""Server-side sessions through both middlewares: memory and a real Redis."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import ORIGIN, SECRET, Clock, Harness, wsgi_echo_app
from redis_support import DEPLOYMENTS, deployment_url

from logto_middleware import LogtoConfig, LogtoWSGIMiddleware
from logto_middleware._protocol.tokens import LOGOUT_TOKEN_MAX_AGE, LOGOUT_TOKEN_MAX_LIFETIME
from logto_middleware._sessions.server import _ID_AAD, user_slot
from logto_middleware.flow import SyncDriver
from logto_middleware.stores import MemoryStore, RedisStore, ServerSessions, SessionStore
from logto_middleware.testing import FakeLogto
from logto_middleware.testing.provider import LOGOUT_TOKEN_TTL
from stores.test_store_interface import _EARLIER_SET


@pytest.fixture(params=["memory", *DEPLOYMENTS])
def make_store(request: pytest.FixtureRequest, clock: Clock) -> Callable[[], SessionStore]:
    """MemoryStore, and RedisStore on each Redis deployment (standalone, cluster, sentinel, TLS)."""
    if request.param == "memory":
        shared = MemoryStore(clock=clock)  # its TTLs run on the test's clock
        return lambda: shared  # one process: one store object
    url = deployment_url(request, request.param)
    return lambda: RedisStore.from_url(url)  # each "process" with its own client


@pytest.fixture
def server_harness(kind: str, fake: FakeLogto, clock: Clock, make_store: Callable[[], SessionStore]) -> Harness:
    return Harness(kind, fake, clock, store=make_store())


def test_cookie_holds_only_an_opaque_session_id(server_harness: Harness) -> None:
    server_harness.sign_in("alice")
    cookie = server_harness.client.cookies["logto.session-token"]
    assert len(cookie) < 120
    body = server_harness.me()
    assert body["authenticated"] is True and body["access_token"]
    assert body["access_token"] not in cookie


def test_signout_kills_a_copied_cookie(server_harness: Harness) -> None:
    server_harness.sign_in("alice")
    copied = server_harness.client.cookies["logto.session-token"]
    server_harness.client.post("/api/auth/signout", headers={"origin": ORIGIN})
    response = server_harness.client.get("/", headers={"cookie": f"logto.session-token={copied}"})
    assert response.json()["authenticated"] is False
    assert any("Max-Age=0" in c for c in response.headers.get_list("set-cookie"))


def test_sign_in_again_gets_a_new_session_id(server_harness: Harness) -> None:
    server_harness.sign_in("alice")
    first = server_harness.client.cookies["logto.session-token"]
    server_harness.sign_in("alice")
    assert server_harness.client.cookies["logto.session-token"] != first
    response = server_harness.client.get("/", headers={"cookie": f"logto.session-token={first}"})
    assert response.json()["authenticated"] is False  # the old id is gone (no fixation)


def test_signout_everywhere_ends_every_session_of_the_user(server_harness: Harness) -> None:
    server_harness.sign_in("alice")
    laptop = server_harness.client
    phone = server_harness.browser()
    server_harness.client = phone
    server_harness.sign_in("alice")
    server_harness.client = server_harness.browser()
    server_harness.sign_in("bob")
    bob = server_harness.client
    assert phone.get("/").json()["authenticated"] is True
    laptop.post("/api/auth/signout", data={"everywhere": "1"}, headers={"origin": ORIGIN})
    assert phone.get("/").json()["authenticated"] is False
    assert bob.get("/").json()["authenticated"] is True


def test_refresh_updates_the_store_without_resending_the_cookie(server_harness: Harness) -> None:
    server_harness.sign_in("alice")
    before = server_harness.me()["access_token"]
    server_harness.clock.advance(server_harness.fake.access_token_ttl - 30)
    response = server_harness.client.get("/")
    assert response.json()["access_token"] != before
    assert [c for c in response.headers.get_list("set-cookie") if c.startswith("logto.session-token")] == []
    assert server_harness.me()["access_token"] == response.json()["access_token"]
    assert server_harness.fake.counts["token:refresh_token"] == 1


def logout_token(fake: FakeLogto, **claims: Any) -> str:
    """A logout token shaped like Logto's for alice; `claims` change it (None removes one)."""
    return fake.sign_logout_token(fake.make_logout_token_claims("alice", **claims))


def post_logout(client: httpx.Client, token: str) -> httpx.Response:
    return client.post("/api/auth/backchannel-logout", data={"logout_token": token})


def test_backchannel_logout_ends_sessions_of_the_sub(server_harness: Harness) -> None:
    server_harness.sign_in("alice")
    token = logout_token(server_harness.fake)
    response = server_harness.browser().post("/api/auth/backchannel-logout", data={"logout_token": token})
    assert response.status_code == 200
    assert server_harness.me()["authenticated"] is False
    replay = server_harness.browser().post("/api/auth/backchannel-logout", data={"logout_token": token})
    assert replay.status_code == 400 and "replayed" in replay.json()["error_description"]


NOW = int(Clock().now)  # the harness clock's start; the harness allows the default 60 s of clock skew


@pytest.mark.parametrize(("change", "reason"), [
    ({"events": None}, "event"), ({"nonce": "n"}, "nonce"), ({"aud": "other-client"}, "audience"),
    ({"iss": "https://evil.example/oidc"}, "issuer"), ({"jti": None}, "jti"), ({"sub": None}, "sub"),
    ({"exp": None}, "no exp"),
    ({"exp": NOW - 61, "iat": NOW - 181}, "expired"),
    ({"iat": NOW + 61, "exp": NOW + 181}, "issued in the future"),
    ({"iat": NOW - LOGOUT_TOKEN_MAX_AGE - 61, "exp": NOW + 60}, "issued too long ago"),
    ({"exp": NOW + LOGOUT_TOKEN_MAX_LIFETIME + 1}, "exp is too far"),
    ({"exp": NOW + 10 * 365 * 86400}, "exp is too far"),
])
def test_backchannel_logout_rejects_bad_tokens(server_harness: Harness, change: dict[str, Any], reason: str) -> None:
    server_harness.sign_in("alice")
    token = logout_token(server_harness.fake, **change)
    response = server_harness.browser().post("/api/auth/backchannel-logout", data={"logout_token": token})
    assert response.status_code == 400
    assert reason in response.json()["error_description"]
    assert server_harness.me()["authenticated"] is True


@pytest.mark.parametrize("change", [
    {"iat": NOW - LOGOUT_TOKEN_MAX_AGE - 60, "exp": NOW + 60},  # the oldest accepted
    {"iat": NOW + 60, "exp": NOW + 180},  # issued in the future within the clock skew
    {"exp": NOW + LOGOUT_TOKEN_MAX_LIFETIME},  # the longest accepted lifetime
    {"iat": NOW - 170, "exp": NOW - 60},  # expired within the clock skew
])
def test_backchannel_logout_accepts_tokens_at_the_bounds(server_harness: Harness, change: dict[str, Any]) -> None:
    server_harness.sign_in("alice")
    assert post_logout(server_harness.browser(), logout_token(server_harness.fake, **change)).status_code == 200
    assert server_harness.me()["authenticated"] is False


def test_backchannel_logout_replay_is_refused_while_the_token_would_pass(server_harness: Harness) -> None:
    """The jti is remembered until the token's exp (plus the clock skew), not for a fixed time."""
    fake, clock = server_harness.fake, server_harness.clock
    token = logout_token(fake)
    start = clock()
    assert post_logout(server_harness.browser(), token).status_code == 200
    last_second = LOGOUT_TOKEN_TTL + server_harness.config.clock_skew
    for at in (0, 1, last_second - 1, last_second):
        clock.now = start + at
        replay = post_logout(server_harness.browser(), token)
        assert replay.status_code == 400 and "replayed" in replay.json()["error_description"], at
    for at in (last_second + 1, 59 * 60, 61 * 60):
        clock.now = start + at
        replay = post_logout(server_harness.browser(), token)
        assert replay.status_code == 400 and "expired" in replay.json()["error_description"], at


def test_backchannel_logout_replay_to_another_process_is_refused(
        kind: str, fake: FakeLogto, clock: Clock, make_store: Callable[[], SessionStore]) -> None:
    """Two middleware instances (two processes with Redis) share the jti memory."""
    first, second = Harness(kind, fake, clock, store=make_store()), Harness(kind, fake, clock, store=make_store())
    first.sign_in("alice")
    token = logout_token(fake)
    assert post_logout(first.browser(), token).status_code == 200
    assert second.me()["authenticated"] is False
    replay = post_logout(second.browser(), token)
    assert replay.status_code == 400 and "replayed" in replay.json()["error_description"]


def test_backchannel_logout_forgets_the_jti_after_the_token_expired(
        request: pytest.FixtureRequest, kind: str, fake: FakeLogto, clock: Clock,
        make_store: Callable[[], SessionStore]) -> None:
    """The store keeps a jti only while the token would pass its checks: no memory pinned."""
    store = make_store()
    harness = Harness(kind, fake, clock, store=store)
    claims = fake.make_logout_token_claims("alice")
    assert post_logout(harness.client, fake.sign_logout_token(claims)).status_code == 200
    remembered_for = claims["exp"] + harness.config.clock_skew + 1 - clock()
    if isinstance(store, RedisStore):
        ttl = store._sync_client().pttl(f"{store.prefix}lock:seen:jti:{claims['jti']}") / 1000
        assert remembered_for - 5 < ttl <= remembered_for
        return
    key = "seen:jti:" + claims["jti"]
    clock.advance(remembered_for - 1)
    assert not SyncDriver(httpx.Client()).run(store.acquire_lock(key, "probe", 1))
    clock.advance(1)
    assert SyncDriver(httpx.Client()).run(store.acquire_lock(key, "probe", 1))  # forgotten


def test_backchannel_logout_needs_a_server_side_store(harness: Harness) -> None:
    token = logout_token(harness.fake)
    response = harness.client.post("/api/auth/backchannel-logout", data={"logout_token": token})
    assert response.status_code == 501
    assert "server-side session store" in response.json()["error_description"]


def test_two_processes_refresh_once(fake: FakeLogto, clock: Clock, make_store: Callable[[], SessionStore]) -> None:
    """Two middleware instances (as two processes would) share one store; 40 concurrent
    requests with an expired access token cause exactly one refresh grant."""
    fake.rotate_refresh_token = "always"
    config = LogtoConfig(issuer=fake.issuer, client_id=fake.client_id, client_secret=fake.client_secret,
                         secret=SECRET)
    inner = fake.transport()

    def slow(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            time.sleep(0.1)
        return inner.handle_request(request)

    apps = [LogtoWSGIMiddleware(wsgi_echo_app, config, store=make_store(), clock=clock,
                                http_client=httpx.Client(transport=httpx.MockTransport(slow))) for _ in range(2)]
    first = httpx.Client(transport=httpx.WSGITransport(app=apps[0]), base_url=ORIGIN)
    start = first.get("/api/auth/signin", follow_redirects=False)
    first.get(fake.authorize(start.headers["location"], login="alice"), follow_redirects=False)
    cookie = f"logto.session-token={first.cookies['logto.session-token']}"
    clock.advance(fake.access_token_ttl)
    results: list[dict[str, Any]] = []
    gate = threading.Barrier(40, timeout=10)

    def one(index: int) -> None:
        client = httpx.Client(transport=httpx.WSGITransport(app=apps[index % 2]), base_url=ORIGIN)
        gate.wait()
        results.append(client.get("/", headers={"cookie": cookie}).json())

    threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 40
    assert all(r["authenticated"] and r["error"] is None for r in results)
    assert len({r["access_token"] for r in results}) == 1
    assert fake.counts["token:refresh_token"] == 1


def test_redis_outage_is_503_and_recovers_with_the_session(kind: str, fake: FakeLogto, clock: Clock,
                                                          redis_url: str, redis_server: Any) -> None:
    harness = Harness(kind, fake, clock, store=RedisStore.from_url(redis_url, timeout=0.5))
    harness.sign_in("alice")
    redis_server.shutdown_keeping_data()
    try:
        page = harness.client.get("/")
        assert page.status_code == 503 and page.headers["retry-after"] == "5"
        assert "still signed in" in page.text
        api = harness.client.get("/", headers={"accept": "application/json"})
        assert api.status_code == 503 and api.json() == {"error": "SessionStoreUnavailable"}
        assert not any("Max-Age=0" in c for c in page.headers.get_list("set-cookie"))
        assert harness.client.get("/api/auth/session").status_code == 503
    finally:
        redis_server.start()
    assert harness.me()["authenticated"] is True


# -- the key layout: a user's session and indexes in one cluster slot; the earlier layout -------

def run_sync(flow: Any) -> Any:
    return SyncDriver(httpx.Client()).run(flow)


def stored_session(harness: Harness, store: SessionStore) -> Any:
    """The SessionData behind the harness browser's cookie."""
    sessions = ServerSessions(store, [SECRET])
    return run_sync(sessions.load(harness.client.cookies["logto.session-token"], "logto.session-token"))


def test_a_users_keys_share_one_cluster_slot(kind: str, fake: FakeLogto, clock: Clock, redis_url: str) -> None:
    import redis
    from redis.crc import key_slot

    store = RedisStore.from_url(redis_url)
    harness = Harness(kind, fake, clock, store=store)
    harness.sign_in("alice")
    keys = [k for k in redis.Redis.from_url(redis_url).keys("logto:*") if b"sid-user:" not in k]
    assert sorted(k.split(b"{")[0] for k in keys) == [b"logto:idx:sid:", b"logto:idx:sub:", b"logto:session:"]
    assert len({key_slot(k) for k in keys}) == 1
    slot_tag = user_slot(fake._subject("alice") if hasattr(fake, "_subject") else "alice")
    assert all(slot_tag.encode() in k for k in keys)


@pytest.fixture(params=["memory", "standalone", "sentinel"])
def earlier_store(request: pytest.FixtureRequest, clock: Clock) -> tuple[SessionStore, Callable[..., None]]:
    """A store holding sessions written by the version before the per-user hash tags (which
    never worked on a cluster: nothing of that layout exists there), and how to write one."""
    if request.param == "memory":
        store: SessionStore = MemoryStore(clock=clock)
        return store, lambda key, blob, ttl, tags: run_sync(store.set(key, blob, ttl, tags))
    url = deployment_url(request, request.param)
    redis_store = RedisStore.from_url(url)
    client = redis_store._sync_client()

    def write(key: str, blob: bytes, ttl: int, tags: list[str]) -> None:
        client.eval(_EARLIER_SET, 2, "logto:" + key, "logto:tags:" + key, blob, ttl, *("logto:tag:" + t for t in tags))

    return redis_store, write


def earlier_session(harness: Harness, store: SessionStore, write: Callable[..., None]) -> tuple[str, Any]:
    """Sign in, then store the session again as the earlier version did (an id without a hash
    tag, indexes `sub:<sub>` and `sid:<sid>`); the cookie value of that id."""
    harness.sign_in("alice")
    data = stored_session(harness, store)
    sessions = ServerSessions(store, [SECRET])
    run_sync(sessions.delete(harness.client.cookies["logto.session-token"]))
    old_id = secrets.token_urlsafe(32)
    key = "session:" + old_id
    blob = sessions._data.encrypt(data.to_json(), key.encode()).encode("ascii")
    write(key, blob, data.expires_at - int(harness.clock()), ["sub:" + data.claims["sub"], "sid:" + data.claims["sid"]])
    return sessions._ids.encrypt(old_id.encode("ascii"), _ID_AAD), data


@pytest.mark.parametrize("rolled", [False, True])
@pytest.mark.parametrize("ending", ["everywhere", "backchannel-sid", "backchannel-sub"])
def test_sessions_of_the_earlier_layout_live_on_and_are_ended(
        kind: str, fake: FakeLogto, clock: Clock, earlier_store: tuple[SessionStore, Callable[..., None]],
        ending: str, rolled: bool) -> None:
    """The upgrade signs nobody out: a cookie of the earlier layout still works, is written back
    (rolled) under its id, and sign-out everywhere and back-channel logout still end it, written
    back since the upgrade or not."""
    store, write = earlier_store
    harness = Harness(kind, fake, clock, store=store)
    cookie, data = earlier_session(harness, store, write)
    laptop = harness.browser()

    def signed_in() -> bool:
        response = laptop.get("/", headers={"cookie": f"logto.session-token={cookie}"})
        assert response.status_code == 200
        sent = [c for c in response.headers.get_list("set-cookie") if c.startswith("logto.session-token=")]
        if not response.json()["authenticated"]:
            return False
        assert all(c.startswith(f"logto.session-token={cookie};") for c in sent), sent  # the same id
        return True

    assert signed_in()
    if rolled:
        clock.advance(harness.config.session_update_age + 1)
        assert signed_in()  # rolled: written again under its id
    other = harness.browser()
    harness.client = other
    harness.sign_in("alice")
    if ending == "everywhere":
        other.post("/api/auth/signout", data={"everywhere": "1"}, headers={"origin": ORIGIN})
    else:
        sid = data.claims["sid"] if ending == "backchannel-sid" else None
        user = None if ending == "backchannel-sid" else "alice"
        token = fake.sign_logout_token(fake.make_logout_token_claims(user, sid=sid))
        assert post_logout(harness.browser(), token).status_code == 200
    assert not signed_in()


@pytest.mark.parametrize("names", ["sid", "sid+sub"])
def test_backchannel_logout_by_sid_ends_that_logto_session_only(
        kind: str, fake: FakeLogto, clock: Clock, make_store: Callable[[], SessionStore], names: str) -> None:
    """A logout token naming the Logto session (with or without `sub`) ends the app's sessions
    of that Logto session, and no other session of the user."""
    store = make_store()
    harness = Harness(kind, fake, clock, store=store)
    harness.sign_in("alice")
    phone = harness.client
    harness.client = harness.browser()
    harness.sign_in("alice")
    laptop = harness.client
    sid = stored_session(harness, store).claims["sid"]
    harness.client = phone
    assert stored_session(harness, store).claims["sid"] != sid
    token = fake.sign_logout_token(fake.make_logout_token_claims("alice" if names == "sid+sub" else None, sid=sid))
    assert post_logout(harness.browser(), token).status_code == 200
    assert laptop.get("/").json()["authenticated"] is False
    assert phone.get("/").json()["authenticated"] is True


def test_a_stored_session_is_decrypted_once_while_the_store_returns_it_unchanged(
        clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store is read on every request, but what it returns is decrypted only when it changed;
    a session ended elsewhere is gone at once."""
    from logto_middleware._sessions.cipher import Cipher
    from logto_middleware.session import SessionData

    store = MemoryStore(clock=clock)
    sessions = ServerSessions(store, [SECRET], clock=clock)
    data = SessionData(claims={"sub": "alice"}, expires_at=int(clock()) + 3600, updated_at=int(clock()))
    cookie = run_sync(sessions.save(data, None, "logto.session-token"))
    decrypted = [0]
    real = Cipher.decrypt

    def counting(self: Cipher, token: str, associated_data: bytes) -> bytes | None:
        decrypted[0] += 1
        return real(self, token, associated_data)

    monkeypatch.setattr(Cipher, "decrypt", counting)
    fresh = ServerSessions(store, [SECRET], clock=clock)  # another process: nothing cached yet
    first = run_sync(fresh.load(cookie, "logto.session-token"))
    assert first is not None and first.claims["sub"] == "alice" and decrypted[0] == 2  # the id, the data
    for _ in range(3):
        assert run_sync(fresh.load(cookie, "logto.session-token")) == first
    assert decrypted[0] == 2
    run_sync(sessions.save(data.with_changes(claims={"sub": "alice", "name": "Alice"}), cookie, "logto.session-token"))
    assert decrypted[0] == 3  # the writer opened the id
    assert run_sync(fresh.load(cookie, "logto.session-token")).claims["name"] == "Alice"  # changed: read again
    assert decrypted[0] == 4
    run_sync(sessions.delete_user("alice"))
    assert run_sync(fresh.load(cookie, "logto.session-token")) is None
