"""`LogtoHooks` (issue 22, "hooks the Auth.js way") through both middlewares, in both cookie
formats and with a server-side store: refuse or redirect a sign-in, fields kept in the session
(through refreshes, on `request.user` and in `/session`), events, and the fail-closed rule for
each hook that raises or answers something unusable."""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from conftest import ORIGIN, SECRET, Clock, Harness
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from logto_middleware import LogtoConfig, LogtoConfigError, LogtoHooks, LogtoUser, LogtoWSGIMiddleware, MemoryStore
from logto_middleware.testing import FakeLogto, make_session_cookie


def who(user: LogtoUser) -> str:
    return str(user.claims["username"])


def _fields_of(user: Any, session: Any) -> dict[str, Any]:
    return {"authenticated": user.is_authenticated, "id": user.id,
            "user_fields": dict(user.fields), "session_fields": dict(session.fields) if session else None,
            "access_token": getattr(session, "access_token", None)}


def asgi_app() -> Starlette:
    async def home(request: Request) -> JSONResponse:
        auth = request.auth
        return JSONResponse(_fields_of(request.user, auth if hasattr(auth, "fields") else None))

    return Starlette(routes=[Route("/{path:path}", home)])


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(_fields_of(environ["logto.user"], environ["logto.session"])).encode()]


class Recorder(LogtoHooks):
    """Records every call; each answer can be set by a test."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.admit: Any = True

    def sign_in(self, user: LogtoUser, tokens: Mapping[str, Any]) -> Any:
        self.calls.append(("sign_in", who(user), sorted(tokens)))
        return self.admit

    def session_data(self, fields: dict[str, Any], user: LogtoUser, trigger: str,
                     tokens: Mapping[str, Any]) -> Mapping[str, Any]:
        self.calls.append(("session_data", trigger, dict(fields)))
        return {**fields, "roles": ["admin"] if who(user) == "alice" else [], "tenant": "t1",
                "refreshes": fields.get("refreshes", -1) + 1, "token_seen": bool(tokens["access_token"])}

    def session(self, session: dict[str, Any], user: LogtoUser) -> Mapping[str, Any]:
        self.calls.append(("session", who(user)))
        session["user"]["roles"] = user.fields["roles"]
        session["tenant"] = user.fields["tenant"]
        return session

    def signed_in(self, user: LogtoUser) -> None:
        self.calls.append(("signed_in", who(user), dict(user.fields)))

    def signed_out(self, user: LogtoUser) -> None:
        self.calls.append(("signed_out", who(user)))

    def session_ended_by_provider(self, sub: str | None, sid: str | None, count: int) -> None:
        self.calls.append(("session_ended_by_provider", sub, sid, count))

    def refresh_failed(self, user: LogtoUser, error: str, session_ended: bool) -> None:
        self.calls.append(("refresh_failed", who(user), error, session_ended))

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == name]


@pytest.fixture(params=["logto", "authjs", "memory"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(kind: str, fake: FakeLogto, clock: Clock, mode: str, hooks: LogtoHooks) -> Harness:
    settings: dict[str, Any] = {"hooks": hooks, "asgi_app": asgi_app(), "wsgi_app": wsgi_app}
    if mode == "authjs":
        settings["session_format"] = "authjs"
    elif mode == "memory":
        settings["store"] = MemoryStore(clock=clock)
    return Harness(kind, fake, clock, **settings)


def session_cookies(harness: Harness, response: httpx.Response) -> list[str]:
    return [c for c in response.headers.get_list("set-cookie") if c.startswith(harness.session_cookie)]


def expire_access_token(harness: Harness) -> None:
    harness.clock.advance(harness.fake.access_token_ttl - 30)  # inside the 60 s leeway


def assert_refused(harness: Harness, response: httpx.Response) -> None:
    assert response.status_code == 302
    assert response.headers["location"] == f"{ORIGIN}/api/auth/error?error=AccessDenied"
    assert session_cookies(harness, response) == []
    assert harness.client.get("/").json()["authenticated"] is False
    error = harness.client.get("/api/auth/error?error=AccessDenied")
    assert error.status_code == 403 and b"Traceback" not in error.content


# -- sign_in -----------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [False, None, "", 1, "https://evil.example/x", "//evil.example/x",
                                    "javascript:alert(1)", f"{ORIGIN}@evil.example/"])
def test_sign_in_refused_ends_on_access_denied_without_a_session(kind: str, fake: FakeLogto, clock: Clock,
                                                                 mode: str, answer: Any) -> None:
    hooks = Recorder()
    hooks.admit = answer
    harness = make(kind, fake, clock, mode, hooks)
    assert_refused(harness, harness.sign_in("alice"))
    assert hooks.named("sign_in") == [("sign_in", "alice", ["access_token", "expires_at", "id_token", "scope"])]
    assert hooks.named("session_data") == [] and hooks.named("signed_in") == []


@pytest.mark.parametrize("answer", ["/welcome?x=1", f"{ORIGIN}/welcome?x=1"])
def test_sign_in_answering_a_url_of_the_app_ends_there_without_a_session(kind: str, fake: FakeLogto,
                                                                        clock: Clock, mode: str, answer: str) -> None:
    hooks = Recorder()
    hooks.admit = answer
    harness = make(kind, fake, clock, mode, hooks)
    response = harness.sign_in("alice")
    assert response.status_code == 302
    assert response.headers["location"] == f"{ORIGIN}/welcome?x=1"
    assert session_cookies(harness, response) == []
    assert harness.client.get("/").json()["authenticated"] is False
    assert hooks.named("signed_in") == []


def test_sign_in_refusal_is_a_json_answer_for_the_authjs_client(kind: str, fake: FakeLogto, clock: Clock) -> None:
    hooks = Recorder()
    hooks.admit = False
    harness = make(kind, fake, clock, "logto", hooks)
    assert_refused(harness, harness.sign_in("alice"))
    # The error route answers JSON to a client that asks for it.
    answer = harness.client.get("/api/auth/error?error=AccessDenied", headers={"accept": "application/json"})
    assert answer.status_code == 403 and answer.json() == {"error": "AccessDenied"}


# -- session_data and session -------------------------------------------------------------------


def test_fields_are_on_the_user_in_session_and_survive_a_refresh(kind: str, fake: FakeLogto, clock: Clock,
                                                                 mode: str) -> None:
    hooks = Recorder()
    harness = make(kind, fake, clock, mode, hooks)
    harness.sign_in("alice")
    first = harness.client.get("/").json()
    expected = {"roles": ["admin"], "tenant": "t1", "refreshes": 0, "token_seen": True}
    assert first["user_fields"] == expected and first["session_fields"] == expected
    assert harness.client.get("/api/auth/session").json()["user"]["roles"] == ["admin"]
    assert hooks.named("signed_in") == [("signed_in", "alice", expected)]

    expire_access_token(harness)
    refreshed = harness.client.get("/").json()
    assert refreshed["access_token"] != first["access_token"]
    assert refreshed["user_fields"] == {**expected, "refreshes": 1}
    # Once per grant, with the fields it had.
    assert hooks.named("session_data") == [("session_data", "sign_in", {}), ("session_data", "refresh", expected)]
    again = harness.client.get("/").json()  # read back from the cookie or the store
    assert again["user_fields"] == {**expected, "refreshes": 1} == again["session_fields"]
    session = harness.client.get("/api/auth/session").json()
    assert session["user"] == {"id": first["id"], "name": session["user"]["name"], "email": session["user"]["email"],
                               "image": session["user"]["image"], "roles": ["admin"]}
    assert session["tenant"] == "t1"


def test_authjs_cookie_keeps_the_fields_where_auth_js_puts_them(kind: str, fake: FakeLogto, clock: Clock) -> None:
    """In Auth.js's cookie the fields are members of the token, as a `jwt` callback's are: an
    Auth.js app sharing the cookie reads them as `token.roles`, and its own fields reach Python."""
    harness = make(kind, fake, clock, "authjs", Recorder())
    harness.sign_in("alice")
    store = harness.middleware.core.manager.sessions
    token = store.decode(harness.client.cookies["authjs.session-token"], "authjs.session-token")  # type: ignore[union-attr]
    assert token is not None and token["roles"] == ["admin"] and token["tenant"] == "t1"
    assert "fields" not in token and "extra" not in token
    # A member an Auth.js app added is a field here.
    token["plan"] = "pro"
    forged = store.encode({k: v for k, v in token.items() if k not in ("iat", "exp", "jti")},  # type: ignore[union-attr]
                          "authjs.session-token")
    body = harness.client.get("/", headers={"cookie": f"authjs.session-token={forged}"}).json()
    assert body["user_fields"]["plan"] == "pro" and body["user_fields"]["roles"] == ["admin"]


def test_session_hook_shapes_only_the_session_route(kind: str, fake: FakeLogto, clock: Clock) -> None:
    hooks = Recorder()
    harness = make(kind, fake, clock, "logto", hooks)
    harness.sign_in("alice")
    for _ in range(3):
        harness.client.get("/")
    assert hooks.named("session") == []  # not on every request
    harness.client.get("/api/auth/session")
    assert hooks.named("session") == [("session", "alice")]


def test_without_hooks_fields_are_empty_and_session_is_unchanged(kind: str, fake: FakeLogto, clock: Clock) -> None:
    harness = make(kind, fake, clock, "logto", LogtoHooks())
    harness.sign_in("alice")
    body = harness.client.get("/").json()
    assert body["user_fields"] == {} and body["session_fields"] == {}
    assert set(harness.client.get("/api/auth/session").json()) == {"user", "expires"}


@pytest.mark.parametrize("session_format", ["logto", "authjs"])
def test_make_session_cookie_takes_fields_for_the_app_s_tests(kind: str, fake: FakeLogto, clock: Clock,
                                                              session_format: str) -> None:
    harness = make(kind, fake, clock, session_format, LogtoHooks())
    cookie = make_session_cookie(harness.config, {"sub": "tester"}, fields={"roles": ["auditor"]}, clock=clock)
    body = harness.client.get("/", headers={"cookie": cookie}).json()
    assert body["user_fields"] == body["session_fields"] == {"roles": ["auditor"]}


# -- the fail-closed rule -------------------------------------------------------------------------


class Raising(Recorder):
    def __init__(self, failing: str) -> None:
        super().__init__()
        self.failing = failing

    def _maybe_fail(self, name: str) -> None:
        if name == self.failing:
            raise RuntimeError(f"the app's bug in {name} (secret-looking text stays out of the page)")

    def sign_in(self, user: LogtoUser, tokens: Mapping[str, Any]) -> Any:
        self._maybe_fail("sign_in")
        return super().sign_in(user, tokens)

    def session_data(self, fields: dict[str, Any], user: LogtoUser, trigger: str,
                     tokens: Mapping[str, Any]) -> Mapping[str, Any]:
        if trigger == "refresh" or self.failing != "session_data_on_refresh":
            self._maybe_fail("session_data" if self.failing != "session_data_on_refresh" else self.failing)
        return super().session_data(fields, user, trigger, tokens)

    def session(self, session: dict[str, Any], user: LogtoUser) -> Mapping[str, Any]:
        self._maybe_fail("session")
        return super().session(session, user)

    def signed_in(self, user: LogtoUser) -> None:
        self._maybe_fail("signed_in")
        super().signed_in(user)

    def signed_out(self, user: LogtoUser) -> None:
        self._maybe_fail("signed_out")
        super().signed_out(user)


@pytest.mark.parametrize("failing", ["sign_in", "session_data"])
def test_a_raising_sign_in_hook_refuses_the_sign_in_cleanly(kind: str, fake: FakeLogto, clock: Clock, mode: str,
                                                            failing: str, caplog: pytest.LogCaptureFixture) -> None:
    harness = make(kind, fake, clock, mode, Raising(failing))
    with caplog.at_level(logging.ERROR, logger="logto_middleware"):
        response = harness.sign_in("alice")
    assert_refused(harness, response)
    assert f"the app's {failing} hook raised on GET /api/auth/callback/logto" in caplog.text
    # The callback's URL carries the code: never in a log line.
    assert "code=" not in caplog.text and "access_token" not in caplog.text.replace("access_token=None", "")


class BadFields(Recorder):
    def __init__(self, answer: Any) -> None:
        super().__init__()
        self.answer = answer

    def session_data(self, fields: dict[str, Any], user: LogtoUser, trigger: str,
                     tokens: Mapping[str, Any]) -> Any:
        return self.answer


@pytest.mark.parametrize("answer", [None, ["roles"], {"sub": "mallory"}, {"exp": 1}, {"access_token": "x"},
                                    {1: "int key"}, {"roles": {"a", "set"}}, {"n": float("nan")},
                                    {"blob": "x" * 3000}], ids=repr)
def test_fields_the_session_cannot_keep_refuse_the_sign_in(kind: str, fake: FakeLogto, clock: Clock, mode: str,
                                                           answer: Any, caplog: pytest.LogCaptureFixture) -> None:
    harness = make(kind, fake, clock, mode, BadFields(answer))
    with caplog.at_level(logging.ERROR, logger="logto_middleware"):
        assert_refused(harness, harness.sign_in("alice"))
    assert "session_data hook answered fields the session cannot keep" in caplog.text


def test_max_session_data_is_the_app_s_to_raise(kind: str, fake: FakeLogto, clock: Clock) -> None:
    hooks = BadFields({"blob": "x" * 3000})
    hooks.max_session_data = 8000
    harness = make(kind, fake, clock, "logto", hooks)
    harness.sign_in("alice")
    assert harness.client.get("/").json()["user_fields"] == {"blob": "x" * 3000}
    # The cookie store splits what no longer fits one cookie: the session still reads back.
    assert len(harness.session_cookie_names()) >= 2


def test_session_data_raising_on_a_refresh_ends_the_session(kind: str, fake: FakeLogto, clock: Clock, mode: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    hooks = Raising("session_data_on_refresh")
    harness = make(kind, fake, clock, mode, hooks)
    harness.sign_in("alice")
    assert harness.client.get("/").json()["user_fields"]["roles"] == ["admin"]
    expire_access_token(harness)
    with caplog.at_level(logging.ERROR, logger="logto_middleware"):
        response = harness.client.get("/")
    assert response.status_code == 200 and response.json()["authenticated"] is False
    assert "the app's session_data hook raised on - (refresh)" in caplog.text
    assert harness.client.get("/").json()["authenticated"] is False
    assert hooks.named("refresh_failed") == [("refresh_failed", "alice", "session_data_failed", True)]


@pytest.mark.parametrize("failing", ["raise", "not a mapping", "not JSON"])
def test_session_hook_failing_answers_the_unshaped_session(kind: str, fake: FakeLogto, clock: Clock,
                                                           failing: str) -> None:
    class Shaper(LogtoHooks):
        def session(self, session: dict[str, Any], user: LogtoUser) -> Any:
            if failing == "raise":
                raise RuntimeError("bug")
            return ["no"] if failing == "not a mapping" else {**session, "when": object()}

    harness = make(kind, fake, clock, "logto", Shaper())
    harness.sign_in("alice")
    sub = harness.client.get("/").json()["id"]
    response = harness.client.get("/api/auth/session")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"user", "expires"} and body["user"]["id"] == sub


@pytest.mark.parametrize("failing", ["signed_in", "signed_out"])
def test_a_raising_event_is_reported_and_changes_nothing(kind: str, fake: FakeLogto, clock: Clock, failing: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    harness = make(kind, fake, clock, "logto", Raising(failing))
    with caplog.at_level(logging.ERROR, logger="logto_middleware"):
        response = harness.sign_in("alice")
        assert response.status_code == 302 and response.headers["location"] == f"{ORIGIN}/"
        assert harness.client.get("/").json()["authenticated"] is True
        out = harness.client.post("/api/auth/signout", headers={"origin": ORIGIN})
    assert out.status_code == 302
    assert harness.client.get("/").json()["authenticated"] is False
    assert f"the app's {failing} hook raised" in caplog.text


# -- events -----------------------------------------------------------------------------------


def test_sign_in_and_sign_out_events_fire_once(kind: str, fake: FakeLogto, clock: Clock, mode: str) -> None:
    hooks = Recorder()
    harness = make(kind, fake, clock, mode, hooks)
    harness.sign_in("alice")
    harness.client.get("/")
    harness.client.post("/api/auth/signout", headers={"origin": ORIGIN})
    harness.client.post("/api/auth/signout", headers={"origin": ORIGIN})  # no session any more: no event
    assert [c[:2] for c in hooks.calls if c[0] in ("signed_in", "signed_out")] == [
        ("signed_in", "alice"), ("signed_out", "alice")]


def test_refresh_failed_fires_once_per_failed_grant(kind: str, fake: FakeLogto, clock: Clock, mode: str) -> None:
    hooks = Recorder()
    harness = make(kind, fake, clock, mode, hooks)
    harness.sign_in("alice")
    fake.fail_next("token", status=503)
    expire_access_token(harness)
    assert harness.client.get("/").json()["authenticated"] is True  # kept for a retry
    assert harness.client.get("/").json()["authenticated"] is True  # in the back-off: no new grant
    assert hooks.named("refresh_failed") == [("refresh_failed", "alice", "ProviderUnavailable", False)]
    clock.advance(10)  # past the back-off
    fake.token_response_hook = lambda body: httpx.Response(400, json={"error": "invalid_grant"})
    assert harness.client.get("/").json()["authenticated"] is False
    assert hooks.named("refresh_failed")[1:] == [("refresh_failed", "alice", "invalid_grant", True)]


def test_back_channel_logout_fires_session_ended_by_provider(kind: str, fake: FakeLogto, clock: Clock) -> None:
    hooks = Recorder()
    harness = make(kind, fake, clock, "memory", hooks)
    harness.sign_in("alice")
    sub = harness.client.get("/").json()["id"]
    token = fake.sign_logout_token(fake.make_logout_token_claims("alice"))
    response = harness.browser().post("/api/auth/backchannel-logout", data={"logout_token": token})
    assert response.status_code == 200
    assert harness.client.get("/").json()["authenticated"] is False
    replay = harness.browser().post("/api/auth/backchannel-logout", data={"logout_token": token})
    assert replay.status_code == 400
    ended = hooks.named("session_ended_by_provider")
    assert len(ended) == 1 and ended[0][1] == sub and ended[0][3] == 1


# -- async hooks -------------------------------------------------------------------------------


class AsyncHooks(LogtoHooks):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def sign_in(self, user: LogtoUser, tokens: Mapping[str, Any]) -> bool | str:  # type: ignore[override]
        await asyncio.sleep(0)
        return who(user) != "mallory"

    async def session_data(self, fields: dict[str, Any], user: LogtoUser, trigger: str,  # type: ignore[override]
                           tokens: Mapping[str, Any]) -> Mapping[str, Any]:
        await asyncio.sleep(0)
        return {"roles": ["reader"], "trigger": trigger}

    async def session(self, session: dict[str, Any], user: LogtoUser) -> Mapping[str, Any]:  # type: ignore[override]
        await asyncio.sleep(0)
        return {**session, "roles": user.fields["roles"]}

    async def signed_in(self, user: LogtoUser) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self.calls.append(("signed_in", who(user)))

    async def refresh_failed(self, user: LogtoUser, error: str, session_ended: bool) -> None:  # type: ignore[override]
        self.calls.append(("refresh_failed", who(user), error))


def test_async_hooks_are_awaited_under_asgi(fake: FakeLogto, clock: Clock, mode: str) -> None:
    hooks = AsyncHooks()
    harness = make("asgi", fake, clock, mode, hooks)
    assert_refused(harness, harness.sign_in("mallory"))
    harness.sign_in("alice")
    assert harness.client.get("/").json()["user_fields"] == {"roles": ["reader"], "trigger": "sign_in"}
    assert harness.client.get("/api/auth/session").json()["roles"] == ["reader"]
    expire_access_token(harness)
    assert harness.client.get("/").json()["user_fields"] == {"roles": ["reader"], "trigger": "refresh"}
    fake.token_response_hook = lambda body: httpx.Response(400, json={"error": "invalid_grant"})
    expire_access_token(harness)
    assert harness.client.get("/").json()["authenticated"] is False
    assert hooks.calls == [("signed_in", "alice"), ("refresh_failed", "alice", "invalid_grant")]


def test_async_hook_under_wsgi_is_a_configuration_error(fake: FakeLogto) -> None:
    config = LogtoConfig(issuer=fake.issuer, client_id=fake.client_id, client_secret=fake.client_secret,
                         secret=SECRET, hooks=AsyncHooks())
    with pytest.raises(LogtoConfigError, match=r"sign_in, session_data, session, signed_in, refresh_failed.*"
                                                r"coroutine functions .*ASGI"):
        LogtoWSGIMiddleware(lambda environ, start_response: [], config)


def test_awaitable_answered_under_wsgi_refuses_the_sign_in(fake: FakeLogto, clock: Clock,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """A plain method that answers a coroutine passes the check at start-up; the sync driver
    refuses it (closed, never left un-awaited) and the sign-in fails cleanly."""

    class Sneaky(LogtoHooks):
        def sign_in(self, user: LogtoUser, tokens: Mapping[str, Any]) -> Any:
            return asyncio.sleep(0)

    harness = make("wsgi", fake, clock, "logto", Sneaky())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be a failure
        with caplog.at_level(logging.ERROR, logger="logto_middleware"):
            assert_refused(harness, harness.sign_in("alice"))
    assert "async hooks need the ASGI middleware" in caplog.text


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(("hooks", "message"), [(Recorder, r"must be an instance: hooks=Recorder\(\)"),
                                                (object(), "must be an instance of a LogtoHooks subclass")])
def test_hooks_must_be_an_instance(fake: FakeLogto, hooks: Any, message: str) -> None:
    with pytest.raises(LogtoConfigError, match=message):
        LogtoConfig(issuer=fake.issuer, client_id=fake.client_id, client_secret=fake.client_secret,
                    secret=SECRET, hooks=hooks)
