"""Apps, requests, sessions and a fake provider shared by every section."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from flask import Flask
from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from logto_middleware import LogtoConfig
from logto_middleware.session import SessionData, session_claims
from logto_middleware.testing import FakeLogto, make_session_cookie

ISSUER = "https://k8x2qp.logto.app/oidc"
CLIENT_ID = "q3l8zbr5m2h6xkd0w9c7t"
CLIENT_SECRET = "Zt7h2QmV9xKp4LrB8nWc3YdF6sJg1Ae5"
SECRET = "bench-secret-6b1f0c52e9d84a7fa3c1d2e3f4a5b6c7"
PEER_SECRET = "peer-secret-0f9e8d7c6b5a49382716a5b4c3d2e1f0"
HOST = "app.example.com"
SESSION_COOKIE = "__Host-logto.session-token"  # https origin
USER = "alice"
OTHER_USER = "bob"  # a second user, to warm a middleware's provider caches
# A Logto user as a social sign-in leaves it: long avatar URL, verified e-mail.
PROFILE: dict[str, Any] = {
    "sub": "u1x9kq7d3m2p",
    "name": "Alice Example-Lindqvist",
    "username": "alice.lindqvist",
    "picture": "https://lh3.googleusercontent.com/a/ACg8ocKx3Zq7mB2vR9tLwY4nP1sJ8dF5hG6kQ0cVbN3xE7uT2oI=s96-c",
    "email": "alice.lindqvist@example.com",
    "email_verified": True,
}
BROWSER_HEADERS: list[tuple[str, str]] = [
    ("host", HOST),
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("accept-language", "en-GB,en;q=0.5"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
]


def config(**overrides: Any) -> LogtoConfig:
    return LogtoConfig(issuer=ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, secret=SECRET,
                       **overrides)


def fake_logto(**kwargs: Any) -> FakeLogto:
    fake = FakeLogto(issuer=ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **kwargs)
    fake.users[USER] = {k: v for k, v in PROFILE.items() if k != "sub"}
    fake.users[OTHER_USER] = {"name": "Bob", "email": "bob@example.com"}
    return fake


# -- the realistic Logto token set ------------------------------------------------------------


@dataclass(frozen=True)
class TokenSet:
    id_token: str
    access_token: str
    refresh_token: str
    claims: dict[str, Any]

    @property
    def session_claims(self) -> dict[str, Any]:
        """The claims as a sign-in keeps them: the ID token's, request-specific ones dropped."""
        return session_claims(self.claims)

    def session_data(self, now: int | None = None) -> SessionData:
        now = int(time.time()) if now is None else now
        return SessionData(claims=self.session_claims, expires_at=now + 30 * 24 * 3600, updated_at=now,
                           id_token=self.id_token, access_token=self.access_token,
                           access_token_expires_at=now + 3600, refresh_token=self.refresh_token,
                           scope="openid offline_access profile email")

    def session_dict(self) -> dict[str, Any]:
        """The very dict the cookie store serialises; the peers carry it as their session."""
        result: dict[str, Any] = json.loads(self.session_data().to_json())
        return result


def token_set(fake: FakeLogto) -> TokenSet:
    """An ES384 ID token over Logto's claims, and two opaque 43-character tokens."""
    now = int(time.time())
    access_token, refresh_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    from logto_middleware._protocol.tokens import at_hash

    claims = {"iss": ISSUER, "sub": PROFILE["sub"], "aud": CLIENT_ID, "exp": now + 3600, "iat": now,
              "at_hash": at_hash(access_token, "ES384"), **{k: v for k, v in PROFILE.items() if k != "sub"},
              "sid": secrets.token_urlsafe(16)[:21], "auth_time": now - 5}
    return TokenSet(fake.sign_id_token(claims), access_token, refresh_token, claims)


def cookie_store_cookie(cfg: LogtoConfig, tokens: TokenSet, *, secure: bool = True) -> str:
    """The Cookie header of a signed-in cookie-store session carrying `tokens` (an https origin's
    `__Host-` cookie unless `secure` is false)."""
    return make_session_cookie(cfg, tokens.session_claims, access_token=tokens.access_token,
                               refresh_token=tokens.refresh_token, expires_in=3600, id_token=tokens.id_token,
                               scope="openid offline_access profile email", secure=secure)


# -- apps ---------------------------------------------------------------------------------------


async def _home(request: StarletteRequest) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def _whoami(request: StarletteRequest) -> PlainTextResponse:
    user = request.scope.get("user")
    return PlainTextResponse(user.identity if user is not None and user.is_authenticated else "-")


def starlette_app() -> Starlette:
    return Starlette(routes=[Route("/", _home), Route("/whoami", _whoami)])


def starlette_peer_app() -> SessionMiddleware:
    return SessionMiddleware(starlette_app(), secret_key=PEER_SECRET, https_only=True)


def starlette_peer_cookie(data: dict[str, Any]) -> str:
    """The Cookie header Starlette's SessionMiddleware sets for a session holding `data`."""

    async def login(request: StarletteRequest) -> PlainTextResponse:
        request.session.update(data)
        return PlainTextResponse("ok")

    app = SessionMiddleware(Starlette(routes=[Route("/", login)]), secret_key=PEER_SECRET, https_only=True)
    messages = call_asgi(app, asgi_scope("/"))
    for name, value in messages[0]["headers"]:
        if name == b"set-cookie":
            return value.decode("latin-1").split(";", 1)[0]
    raise RuntimeError("SessionMiddleware set no cookie")


def flask_app(secret_key: str | None = None) -> Flask:
    app = Flask("bench")
    if secret_key is not None:
        app.secret_key = secret_key

    @app.get("/")
    def home() -> str:
        return "ok"

    @app.get("/whoami")
    def whoami() -> str:
        from flask import request

        user = request.environ.get("logto.user")
        return str(user.identity) if user is not None and user.is_authenticated else "-"

    return app


def flask_peer_cookie(app: Flask, data: dict[str, Any]) -> str:
    """The Cookie header Flask's own session interface writes for a session holding `data`."""
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    return f"{app.config['SESSION_COOKIE_NAME']}={serializer.dumps(dict(data))}"


# -- requests -----------------------------------------------------------------------------------


def asgi_scope(path: str, cookie: str | None = None, query: str = "", method: str = "GET",
               headers: Iterable[tuple[str, str]] = BROWSER_HEADERS) -> dict[str, Any]:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    if cookie:
        raw.append((b"cookie", cookie.encode("latin-1")))
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "https", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": query.encode("latin-1"), "headers": raw, "client": ("203.0.113.7", 51234),
            "server": (HOST, 443)}


def wsgi_environ(path: str, cookie: str | None = None, query: str = "",
                 headers: Iterable[tuple[str, str]] = BROWSER_HEADERS) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": query,
        "SERVER_NAME": HOST, "SERVER_PORT": "443", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "203.0.113.7",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "https", "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(), "wsgi.multithread": True, "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in headers:
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    return environ


async def asgi_receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def asgi_discard(message: dict[str, Any]) -> None:
    return None


def call_asgi(app: Any, scope: dict[str, Any], loop: asyncio.AbstractEventLoop | None = None) -> list[dict[str, Any]]:
    """Run one request; the messages the app sent."""
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    async def run() -> None:
        await app(dict(scope), asgi_receive, send)

    if loop is None:
        asyncio.run(run())
    else:
        loop.run_until_complete(run())
    return messages


def asgi_status_headers(messages: list[dict[str, Any]]) -> tuple[int, list[tuple[str, str]]]:
    start = messages[0]
    return start["status"], [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", [])]


def call_wsgi(app: Any, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    captured: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured[:] = [status, headers]
        return lambda data: None

    body = app(dict(environ), start_response)
    try:
        content = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return int(captured[0].split()[0]), captured[1], content


def wsgi_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


def cookies_from(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in headers:
        if name.lower() == "set-cookie":
            pair = value.split(";", 1)[0]
            key, _, val = pair.partition("=")
            found[key] = val
    return found


def header(headers: Iterable[tuple[str, str]], wanted: str) -> str | None:
    return next((v for k, v in headers if k.lower() == wanted), None)


# -- signing in through the middleware -----------------------------------------------------------


def sign_in_asgi(app: Any, fake: FakeLogto, loop: asyncio.AbstractEventLoop | None = None,
                 login: str = USER) -> str:
    """Sign in as `login` (alice by default) through the ASGI middleware; the session's Cookie header."""
    status, headers = asgi_status_headers(call_asgi(app, asgi_scope("/api/auth/signin"), loop))
    assert status == 302, status
    transaction = cookies_from(headers)
    callback = urlsplit(fake.authorize(str(header(headers, "location")), login=login))
    cookie = "; ".join(f"{k}={v}" for k, v in transaction.items())
    status, headers = asgi_status_headers(call_asgi(app, asgi_scope(callback.path, cookie, callback.query), loop))
    assert status == 302, status
    session = {k: v for k, v in cookies_from(headers).items() if "session-token" in k and v}
    assert session, headers
    return "; ".join(f"{k}={v}" for k, v in session.items())


def sign_in_wsgi(app: Any, fake: FakeLogto, login: str = USER) -> str:
    status, headers, _ = call_wsgi(app, wsgi_environ("/api/auth/signin"))
    assert status == 302, status
    transaction = cookies_from(headers)
    callback = urlsplit(fake.authorize(str(header(headers, "location")), login=login))
    cookie = "; ".join(f"{k}={v}" for k, v in transaction.items())
    status, headers, _ = call_wsgi(app, wsgi_environ(callback.path, cookie, callback.query))
    assert status == 302, status
    session = {k: v for k, v in cookies_from(headers).items() if "session-token" in k and v}
    assert session, headers
    return "; ".join(f"{k}={v}" for k, v in session.items())


@dataclass
class Transaction:
    """A sign-in started through the middleware and authorized at the provider: its callback."""

    path: str
    query: str
    cookie: str


def start_sign_ins_wsgi(app: Any, fake: FakeLogto, count: int) -> list[Transaction]:
    found = []
    for _ in range(count):
        status, headers, _ = call_wsgi(app, wsgi_environ("/api/auth/signin"))
        assert status == 302, status
        callback = urlsplit(fake.authorize(str(header(headers, "location")), login=USER))
        cookie = "; ".join(f"{k}={v}" for k, v in cookies_from(headers).items())
        found.append(Transaction(callback.path, callback.query, cookie))
    return found


# -- the provider's transport, timed and optionally slowed -----------------------------------------


class ProviderTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """FakeLogto behind httpx: adds a fixed delay to chosen endpoints (a network round-trip:
    `time.sleep` for the sync client, `asyncio.sleep` for the async one) and sums the time
    spent inside the provider (the mocked round-trips), as wall time and as the CPU time of the
    calling thread (FakeLogto runs in the caller's thread)."""

    def __init__(self, fake: FakeLogto, delays: dict[str, float] | None = None) -> None:
        self._inner = fake.transport()
        self._delays = delays or {}
        self._prefix = urlsplit(ISSUER).path
        self._lock = threading.Lock()
        self.provider_ns = 0
        self.provider_cpu_ns = 0
        self.calls = 0
        self._by_endpoint: dict[str, tuple[int, int]] = {}

    def _endpoint(self, request: httpx.Request) -> str:
        path = request.url.path[len(self._prefix):]
        return "discovery" if path.startswith("/.well-known/") else path.strip("/")

    def _delay(self, request: httpx.Request) -> float:
        return self._delays.get(self._endpoint(request), 0.0) if self._delays else 0.0

    def endpoint(self, name: str) -> tuple[int, int]:
        """Calls to one endpoint ("token", "jwks", "discovery"...) and their total wall time (ns)."""
        with self._lock:
            return self._by_endpoint.get(name, (0, 0))

    def _account(self, request: httpx.Request, start: int, cpu: int) -> None:
        # The clocks are read last, so that this bookkeeping counts as the provider's time too.
        name = self._endpoint(request)
        with self._lock:
            wall = time.perf_counter_ns() - start
            self.provider_ns += wall
            self.provider_cpu_ns += time.thread_time_ns() - cpu
            self.calls += 1
            calls, total = self._by_endpoint.get(name, (0, 0))
            self._by_endpoint[name] = (calls + 1, total + wall)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        start, cpu = time.perf_counter_ns(), time.thread_time_ns()
        delay = self._delay(request)
        if delay:
            time.sleep(delay)
        response = self._inner.handle_request(request)
        self._account(request, start, cpu)
        return response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        start = time.perf_counter_ns()
        delay = self._delay(request)
        if delay:
            await asyncio.sleep(delay)
        # After the sleep: other tasks run on this thread while it lasts.
        cpu = time.thread_time_ns()
        response = self._inner.handle_request(request)
        self._account(request, start, cpu)
        return response


class OffsetClock:
    """time.time() plus an offset the benchmark can move (to age an access token)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


# -- a private redis-server -----------------------------------------------------------------------


class RedisServer:
    """A throwaway redis-server on a free loopback port, without persistence."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._dir = tempfile.mkdtemp(prefix="logto-bench-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run scripts/install-system-deps.sh")
        self.port = free_port()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self._dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, probe=b"PING\r\n", expect=b"+PONG")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
        shutil.rmtree(self._dir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, *, probe: bytes | None = None, expect: bytes = b"", timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                if probe is None:
                    return
                conn.sendall(probe)
                if conn.recv(64).startswith(expect):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port}")


Log = Callable[[str], None]
