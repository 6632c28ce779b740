"""Property-based fuzzing of both middlewares, driven at the raw interface (an ASGI scope and
`receive`, a WSGI environ), so that exactly what was sent can be compared with what the app saw.

Every property runs in every session mode (`Mode`: the Logto cookie, the Auth.js cookie,
MemoryStore, RedisStore), and the cookies drawn are of every format: sealed Logto values, JWEs
(genuine, tampered, with hostile headers), session ids, chunks, huge values.

Properties:
- nothing escapes: no exception out of the middleware, no 500, no internal error logged;
- a session cookie is only ever written back for a genuine session: a bad one is cleared or
  ignored;
- a request not under the base path reaches the app byte-for-byte (path, raw path, query string,
  headers in order, body, and every other scope/environ key), and the app's response comes
  back unchanged (the middleware may only add Set-Cookie headers for its own cookies);
- a request under the base path never reaches the app and is answered with a well-formed
  response (ASCII header names, latin-1 values without CR/LF).

Budget: the `logto-security` hypothesis profile (150 examples, no deadline), derandomized
when CI=true so CI runs are reproducible; LOGTO_FUZZ_EXAMPLES raises it for a longer local run.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from conftest import SECRET, Clock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logto_middleware import LogtoASGIMiddleware, LogtoConfig, LogtoWSGIMiddleware
from logto_middleware._core.handler import FailureLog
from logto_middleware._sessions.authjs import AuthJsCookieStore, token_from_session
from logto_middleware._sessions.cipher import Cipher
from logto_middleware._sessions.cookie import CookieStore
from logto_middleware.session import SessionData
from logto_middleware.testing import FakeLogto

from .security_support import Mode

IN_CI = os.environ.get("CI") == "true"
settings.register_profile(
    "logto-security", max_examples=int(os.environ.get("LOGTO_FUZZ_EXAMPLES", "150")), deadline=None,
    derandomize=IN_CI, database=None if IN_CI else settings.default.database,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
PROFILE = settings.get_profile("logto-security")

BASE = "/api/auth"
ROUTES = ["", "/", "/signin", "/signin/logto", "/callback/logto", "/signout", "/session", "/csrf", "/providers",
          "/error", "/nope", "/signin/", "/callback", "/callback/logto/x", "//signin", "/%2e%2e/signin", "/signin\x00"]
OWN_COOKIES = ("logto.session-token", "authjs.session-token", "logto.transaction", "logto.csrf-token",
               "authjs.csrf-token")
SESSION_NAMES = ("logto.session-token", "authjs.session-token")

# -- strategies ---------------------------------------------------------------------------------

VISIBLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
LATIN1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"

NASTY = st.sampled_from([
    "", "%", "%%", "%0d%0a", "%00", "%ff", "%E2%82%AC", "//evil.example", "/\\evil.example", "https://evil.example",
    "javascript:alert(1)", "<script>alert(1)</script>", "A" * 3000, "\u20ac", "\u202e", "../..", ";", ",", "|",
    "=", "&", "+", "?", "#", " ", "\t", "null", "[]", "{}", "-1", "99999999999999999999",
])
FIELD_NAMES = st.sampled_from([
    "callbackUrl", "state", "code", "iss", "error", "error_description", "csrfToken", "prompt", "login_hint",
    "direct_sign_in", "first_screen", "identifier", "ui_locales", "redirect_uri", "nonce", "x",
])


def latin1(text: str) -> str:
    """Header bytes arrive latin-1-decoded: characters beyond U+00FF cannot be sent at all."""
    return text.encode("latin-1", "replace").decode("latin-1")


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.text(VISIBLE, max_size=200))
    if kind == 1:
        return "&".join(f"{draw(FIELD_NAMES)}={quote(draw(st.one_of(NASTY, ANY_TEXT)), safe='')}"
                        for _ in range(draw(st.integers(0, 6))))
    if kind == 2:  # many fields: parsers with a field limit must not turn this into an error
        return "&".join(f"f{i}=1" for i in range(draw(st.integers(90, 300))))
    if kind == 3:
        return draw(st.sampled_from(["", "&", "=", "&&==", "a", "a=", "=a", "%", "a=%zz", "a=%C3", "a=1;b=2"]))
    return draw(st.text(LATIN1, max_size=100))


# -- session cookie values of every format ------------------------------------------------------

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
NOW = Clock().now  # every rig's clock starts there


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _genuine_data() -> SessionData:
    return SessionData(claims={"sub": "fuzz-user", "name": "Fuzz"}, expires_at=int(NOW) + 3600,
                       updated_at=int(NOW), access_token="fuzz-access-token",
                       access_token_expires_at=int(NOW) + 3600)


def _genuine_values() -> dict[str, str]:
    """A genuine session of each cookie format (a server-side id is genuine only in its store:
    here it is a well-sealed id of no session)."""
    authjs = AuthJsCookieStore([SECRET], clock=lambda: NOW)
    return {
        "logto": CookieStore([SECRET]).seal(_genuine_data()),
        "authjs": authjs.encode(token_from_session(_genuine_data()), "authjs.session-token", 3600),
        "authjs_secure": authjs.encode(token_from_session(_genuine_data()), "__Secure-authjs.session-token", 3600),
        "unknown_session_id": Cipher([SECRET], "session id").encrypt(b"no-such-session-id", b"logto.session-id"),
    }


GENUINE = _genuine_values()
HOSTILE_HEADERS = [b"[]", b"1", b'"s"', b"null", b'["alg","enc"]', b'"alg enc"', b'{"alg":"none"}',
                   b'{"alg":"none","enc":"A256GCM"}', b'{"alg":"dir","enc":"A256CBC-HS512"}',
                   b'{"alg":"dir","enc":"A256GCM","kid":[]}', b'{"alg":"dir","enc":{}}', b"[" * 760,
                   b'{"alg":"dir","enc":"A256CBC-HS512","kid":"' + GENUINE["authjs"][:20].encode() + b'"}',
                   b'{"alg":"RSA-OAEP","enc":"A256GCM"}', b'{"alg":"dir","enc":"A256GCM","zip":"DEF"}']


def flip(value: str, at: int) -> str:
    at %= max(1, len(value))
    return value[:at] + ("A" if value[at:at + 1] != "A" else "B") + value[at + 1:]


@st.composite
def jwes(draw: st.DrawFn) -> str:
    """JWE compact tokens: hostile or random headers over random parts, and genuine ones tampered."""
    if draw(st.integers(0, 3)) == 0:
        return flip(GENUINE["authjs"], draw(st.integers(0, len(GENUINE["authjs"]))))
    header = draw(st.sampled_from(HOSTILE_HEADERS) if draw(st.integers(0, 3)) else st.binary(max_size=40))
    parts = [draw(st.text(st.sampled_from(B64URL), max_size=size)) for size in (8, 30, 80, 50)]
    return ".".join([_b64(header), *parts])


def hostile_jwe(header: bytes) -> str:
    return ".".join([_b64(header), "", _b64(b"i" * 16), _b64(b"c" * 48), _b64(b"t" * 32)])


SESSION_VALUES = st.one_of(
    st.sampled_from(HOSTILE_HEADERS).map(hostile_jwe), st.sampled_from(sorted(GENUINE.values())), jwes(),
    st.builds(flip, st.sampled_from(sorted(GENUINE.values())), st.integers(0, 400)),
    st.builds(lambda v, n: v[:n], st.sampled_from(sorted(GENUINE.values())), st.integers(0, 400)),
    st.sampled_from(["A" * 5000, "A" * 40_000, "e30." * 500]))


def genuine_in(cookie: str) -> bool:
    """Whether a Cookie header carries a genuine session value (which may be written back, rolled)."""
    return any(value in cookie for value in GENUINE.values())


@st.composite
def cookie_headers(draw: st.DrawFn) -> str:
    names = st.one_of(
        st.sampled_from([*OWN_COOKIES, "logto.session-token.0", "logto.session-token.1", "logto.session-token.2",
                         "logto.session-token.999", "__Secure-logto.session-token", "__Host-logto.csrf-token",
                         "__Secure-logto.transaction", "logto.session-token.", "other", "authjs.session-token.0",
                         "authjs.session-token.1", "__Secure-authjs.session-token", "__Host-authjs.csrf-token"]),
        st.text(st.sampled_from(TOKEN_CHARS), min_size=1, max_size=12))
    values = st.one_of(
        NASTY, st.text(st.sampled_from(B64URL), max_size=400),
        st.builds(lambda a, b: f"{a}|{b}", st.text(st.sampled_from("0123456789abcdef"), max_size=64),
                  st.text(st.sampled_from("0123456789abcdef"), max_size=64)),
        st.text(LATIN1, max_size=50))
    pairs = draw(st.lists(st.tuples(names, values.map(latin1)), max_size=8))
    # A session cookie of any format under any session name, whole or in chunks.
    for _ in range(draw(st.sampled_from([0, 1, 1, 2]))):
        name, value = draw(st.sampled_from(SESSION_NAMES)), draw(SESSION_VALUES)
        if draw(st.booleans()):
            pairs.append((name, value))
        else:
            cut = draw(st.integers(0, len(value)))
            pairs += [(f"{name}.0", value[:cut]), (f"{name}.1", value[cut:])]
    pairs = draw(st.permutations(pairs))
    separator = draw(st.sampled_from(["; ", ";", " ; ", ","]))
    return separator.join(f"{n}={v}" for n, v in pairs)


HEADER_NAMES = st.one_of(
    st.sampled_from(["host", "origin", "referer", "x-forwarded-host", "x-forwarded-proto", "forwarded", "accept",
                     "x-auth-return-redirect", "sec-fetch-site", "x-csrf-token", "user-agent", "authorization",
                     "content-type", "x-requested-with"]),
    st.text(st.sampled_from(TOKEN_CHARS), min_size=1, max_size=20))
HEADER_VALUES = st.one_of(
    NASTY, st.text(LATIN1, max_size=80), st.one_of(jwes(), SESSION_VALUES).map(lambda t: "Bearer " + t),
    st.sampled_from(["http://localhost:3000", "localhost:3000", "https", "http", "same-origin", "cross-site",
                     "application/json", "application/x-www-form-urlencoded", "text/html", "1", "evil.example"]),
).map(latin1)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(st.binary(max_size=600))
    if kind == 1:
        return draw(query_strings()).encode("latin-1", "replace")
    return b"".join(draw(st.lists(st.sampled_from([b"csrfToken=", b"callbackUrl=", b"%", b"&", b"=", b"\xff",
                                                   b"//evil.example", b"x" * 100]), max_size=20)))


@st.composite
def requests(draw: st.DrawFn, under_base: bool) -> dict[str, Any]:
    if under_base:
        path = BASE + draw(st.one_of(st.sampled_from(ROUTES), st.sampled_from(ROUTES).map(lambda r: r + "/x"),
                                     st.text(VISIBLE, max_size=30).map(lambda t: "/" + t)))
    else:
        path = draw(st.one_of(
            st.sampled_from(["/", "/api/authx", "/api/auth.json", "/API/AUTH/signin", "/api", "/api/", "//api/auth",
                             "/x/api/auth/signin", "/api/authentication", "/api/auth%2Fsignin", "/static/a.js"]),
            st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40).map(
                lambda t: "/" + t))).replace("\x00", "")
        if path == BASE or path.startswith(BASE + "/"):
            path = "/x" + path
    headers = draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8))
    if draw(st.integers(0, 3)):
        headers.append(("cookie", draw(cookie_headers())))
    return {
        "method": draw(st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"])),
        "path": path,
        "query": draw(query_strings()),
        "headers": [(n.lower(), v) for n, v in headers],
        "body": draw(bodies()),
        "chunks": draw(st.integers(1, 3)),
        "scheme": draw(st.sampled_from(["http", "https"])),
    }


@st.composite
def session_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Requests whose point is their session cookies (every format, whole or in chunks, under
    every session name), on the routes that read a session and on app paths."""
    method, path = draw(st.sampled_from([("GET", "/"), ("POST", "/x"), ("GET", BASE + "/session"),
                                         ("POST", BASE + "/signout"), ("GET", BASE + "/callback/logto"),
                                         ("GET", BASE + "/signout"), ("POST", BASE + "/signin")]))
    pairs: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(["", "__Secure-"])) + draw(st.sampled_from(SESSION_NAMES))
        value = draw(SESSION_VALUES)
        if draw(st.integers(0, 3)):
            pairs.append((name, value))
        else:
            cut = draw(st.integers(0, len(value)))
            pairs += [(f"{name}.0", value[:cut]), (f"{name}.1", value[cut:])]
    cookie = "; ".join(f"{n}={v}" for n, v in draw(st.permutations(pairs)))
    if draw(st.booleans()):
        cookie += "; " + draw(cookie_headers())
    headers = [*(SAME_ORIGIN_FORM if method == "POST" else ()), ("cookie", cookie)]
    if draw(st.integers(0, 3)) == 0:
        headers.append(("authorization", "Bearer " + draw(SESSION_VALUES)))
    return {"method": method, "path": path, "query": "", "headers": list(headers), "body": b"", "chunks": 1,
            "scheme": draw(st.sampled_from(["http", "https"]))}


def seed(method: str, path: str, query: str = "", headers: tuple[tuple[str, str], ...] = (),
         body: bytes = b"") -> dict[str, Any]:
    return {"method": method, "path": path, "query": query, "headers": list(headers), "body": body, "chunks": 1,
            "scheme": "http"}


SAME_ORIGIN_FORM = (("host", "localhost:3000"), ("origin", "http://localhost:3000"),
                    ("content-type", "application/x-www-form-urlencoded"))
# Inputs that broke a route (or nearly): checked on every run, beside the random draw.
ROUTE_SEEDS = {
    "signin_query_101_fields": seed("GET", BASE + "/signin", "&".join(f"f{i}=1" for i in range(101))),
    "signin_form_101_fields": seed("POST", BASE + "/signin", "", SAME_ORIGIN_FORM,
                                   "&".join(f"f{i}=1" for i in range(101)).encode()),
    "callback_query_101_fields": seed("GET", BASE + "/callback/logto", "&".join(f"f{i}=1" for i in range(101))),
    "error_query_101_fields": seed("GET", BASE + "/error", "error=x&" * 101),
    "signout_form_101_fields": seed("POST", BASE + "/signout", "", SAME_ORIGIN_FORM, b"a=1&" * 101),
    "signout_non_latin1_callback_url": seed("POST", BASE + "/signout", "", SAME_ORIGIN_FORM,
                                            b"callbackUrl=%2F%E2%82%AC"),
    "signout_latin1_callback_url": seed("POST", BASE + "/signout", "callbackUrl=/caf%C3%A9", SAME_ORIGIN_FORM),
    "signout_invalid_utf8_callback_url": seed("POST", BASE + "/signout", "", SAME_ORIGIN_FORM,
                                              b"callbackUrl=/%FF%FE"),
    "signin_100_fields": seed("GET", BASE + "/signin", "&".join(f"f{i}=1" for i in range(100))),
    "huge_query": seed("GET", BASE + "/signin", "callbackUrl=" + "A" * 20000),
    "huge_form": seed("POST", BASE + "/signout", "", SAME_ORIGIN_FORM, b"csrfToken=" + b"A" * 70000),
}
# Issue 21, finding 3: a JWE session cookie whose header is JSON but not an object (500s, then).
for _label, _header in (("array", b"[]"), ("number", b"1"), ("string", b'"s"'), ("alg_none", b'{"alg":"none"}')):
    _cookie = ("cookie", f"logto.session-token={hostile_jwe(_header)}; authjs.session-token={hostile_jwe(_header)}")
    ROUTE_SEEDS[f"session_jwe_header_{_label}"] = seed("GET", BASE + "/session", "", (_cookie,))
    ROUTE_SEEDS[f"signout_jwe_header_{_label}"] = seed("POST", BASE + "/signout", "", (*SAME_ORIGIN_FORM, _cookie))


# -- the two middlewares around recording apps --------------------------------------------------

def make_config(fake: FakeLogto, **settings: Any) -> LogtoConfig:
    return LogtoConfig(issuer=fake.issuer, client_id=fake.client_id, client_secret=fake.client_secret, secret=SECRET,
                       **settings)


APP_HEADERS = [(b"content-type", b"application/octet-stream"), (b"x-app", b"\xe9\x01 \"raw\"")]
APP_BODY = b"app body \x00\xff"


class RecordingASGIApp:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen = dict(scope)
        messages: list[dict[str, Any]] = []
        while True:
            message = await receive()
            messages.append(dict(message))
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        self.calls.append((seen, messages))
        await send({"type": "http.response.start", "status": 200, "headers": list(APP_HEADERS)})
        await send({"type": "http.response.body", "body": APP_BODY})


def asgi_scope(request: dict[str, Any]) -> dict[str, Any]:
    path: str = request["path"]
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": request["method"],
        "scheme": request["scheme"], "path": path, "raw_path": quote(path, safe="/%").encode("ascii"),
        "root_path": "", "query_string": request["query"].encode("latin-1", "replace"),
        "headers": [(n.encode("latin-1"), v.encode("latin-1")) for n, v in request["headers"]],
        "client": ("203.0.113.9", 5555), "server": ("localhost", 3000), "state": {},
    }


def body_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    body: bytes = request["body"]
    size = max(1, -(-len(body) // request["chunks"]))
    parts = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
    return [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1} for i, part in enumerate(parts)]


def run_asgi(loop: asyncio.AbstractEventLoop, middleware: LogtoASGIMiddleware, scope: dict[str, Any],
             messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    inbox = [dict(m) for m in messages]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    loop.run_until_complete(middleware(scope, receive, send))
    return sent


def wsgi_environ(request: dict[str, Any]) -> dict[str, Any]:
    body: bytes = request["body"]
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request["method"], "SCRIPT_NAME": "",
        "PATH_INFO": request["path"].encode("utf-8").decode("latin-1"),  # PEP 3333: bytes as latin-1
        "QUERY_STRING": request["query"].encode("latin-1", "replace").decode("latin-1"),
        "SERVER_NAME": "localhost", "SERVER_PORT": "3000", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.9", "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0), "wsgi.url_scheme": request["scheme"], "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(), "wsgi.multithread": False, "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in request["headers"]:
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name != "content-length":
            key = "HTTP_" + name.upper().replace("-", "_")
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


class RecordingWSGIApp:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], bytes]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen = dict(environ)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        self.calls.append((seen, body))
        start_response("200 OK", [(n.decode("latin-1"), v.decode("latin-1")) for n, v in APP_HEADERS])
        return [APP_BODY]


def run_wsgi(middleware: LogtoWSGIMiddleware, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        started.append((status, list(headers)))

    chunks = middleware(environ, start_response)
    body = b"".join(chunks)
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
    assert len(started) == 1, started
    return started[0][0], started[0][1], body


# -- checks -------------------------------------------------------------------------------------

def only_own_cookies_added(app_headers: list[tuple[str, str]], final: list[tuple[str, str]]) -> None:
    assert final[: len(app_headers)] == app_headers, final
    for name, value in final[len(app_headers):]:
        assert name.lower() == "set-cookie", (name, value)
        cookie = value.split("=", 1)[0].removeprefix("__Secure-").removeprefix("__Host-")
        assert cookie.startswith(OWN_COOKIES), value


def no_session_written(request: dict[str, Any], headers: list[tuple[str, str]]) -> None:
    """A bad session cookie is cleared or ignored: a session cookie is only ever written (not
    deleted) back for a genuine session."""
    cookie = " ".join(v for n, v in request["headers"] if n == "cookie")
    if genuine_in(cookie):
        return
    for name, value in headers:
        if name.lower() == "set-cookie":
            cookie_name, _, rest = value.partition("=")
            if cookie_name.removeprefix("__Secure-").removeprefix("__Host-").startswith(SESSION_NAMES):
                assert rest.startswith(";") and "Max-Age=0" in rest, value


def well_formed(headers: list[tuple[str, str]]) -> None:
    for name, value in headers:
        assert name.isascii() and name and all(c in TOKEN_CHARS + TOKEN_CHARS.upper() for c in name), name
        value.encode("latin-1")  # PEP 3333 and every ASGI server need latin-1
        assert "\r" not in value and "\n" not in value and "\x00" not in value, (name, value)


class Errors(logging.Handler):
    """Collects the middleware's own error records (its catch-all logs every swallowed exception)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "failed on" in record.getMessage():
            self.records.append(record)


@pytest.fixture
def errors() -> Iterator[Errors]:
    handler = Errors()
    logger = logging.getLogger("logto_middleware")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


# -- the properties -----------------------------------------------------------------------------

def check_asgi_passthrough(loop: asyncio.AbstractEventLoop, middleware: LogtoASGIMiddleware,
                           app: RecordingASGIApp, errors: Errors, request: dict[str, Any]) -> None:
    app.calls.clear()
    errors.records.clear()
    scope = asgi_scope(request)
    sent_scope = {k: (list(v) if isinstance(v, list) else v) for k, v in scope.items()}
    messages = body_messages(request)
    sent = run_asgi(loop, middleware, scope, messages)
    assert len(app.calls) == 1
    seen, received = app.calls[0]
    for key, value in sent_scope.items():
        assert seen[key] == value, key
    assert set(seen) - set(sent_scope) <= {"user", "auth", "logto.base_path"}
    assert received == messages
    assert sent[0]["status"] == 200
    only_own_cookies_added([(n.decode("latin-1"), v.decode("latin-1")) for n, v in APP_HEADERS],
                           [(n.decode("latin-1"), v.decode("latin-1")) for n, v in sent[0]["headers"]])
    assert b"".join(m.get("body", b"") for m in sent[1:]) == APP_BODY
    no_session_written(request, [(n.decode("latin-1"), v.decode("latin-1")) for n, v in sent[0]["headers"]])
    assert errors.records == []


def check_wsgi_passthrough(middleware: LogtoWSGIMiddleware, app: RecordingWSGIApp, errors: Errors,
                           request: dict[str, Any]) -> None:
    app.calls.clear()
    errors.records.clear()
    environ = wsgi_environ(request)
    sent = {k: v for k, v in environ.items() if k != "wsgi.input"}
    status, headers, body = run_wsgi(middleware, environ)
    assert len(app.calls) == 1
    seen, received = app.calls[0]
    for key, value in sent.items():
        assert seen[key] == value, key
    assert seen["wsgi.input"] is environ["wsgi.input"]
    assert set(seen) - set(environ) <= {"logto.user", "logto.session"}
    assert received == request["body"]
    assert status == "200 OK"
    only_own_cookies_added([(n.decode("latin-1"), v.decode("latin-1")) for n, v in APP_HEADERS], headers)
    assert body == APP_BODY
    no_session_written(request, headers)
    assert errors.records == []


def check_asgi_route(loop: asyncio.AbstractEventLoop, middleware: LogtoASGIMiddleware, app: RecordingASGIApp,
                     errors: Errors, request: dict[str, Any]) -> None:
    app.calls.clear()
    errors.records.clear()
    sent = run_asgi(loop, middleware, asgi_scope(request), body_messages(request))
    assert app.calls == []
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] < 500, (sent[0]["status"], sent[1]["body"][:200])
    for name, value in sent[0]["headers"]:
        assert isinstance(name, bytes) and isinstance(value, bytes)
        assert name.isascii() and value.isascii(), (name, value)
    well_formed([(n.decode("latin-1"), v.decode("latin-1")) for n, v in sent[0]["headers"]])
    no_session_written(request, [(n.decode("latin-1"), v.decode("latin-1")) for n, v in sent[0]["headers"]])
    assert errors.records == []


def check_wsgi_route(middleware: LogtoWSGIMiddleware, app: RecordingWSGIApp, errors: Errors,
                     request: dict[str, Any]) -> None:
    app.calls.clear()
    errors.records.clear()
    status, headers, _ = run_wsgi(middleware, wsgi_environ(request))
    assert app.calls == []
    assert int(status.split(" ", 1)[0]) < 500, status
    for name, value in headers:
        assert isinstance(value, str) and value.isascii(), (name, value)
    well_formed(headers)
    no_session_written(request, headers)
    assert errors.records == []


class Rig:
    """One middleware of `kind`, in session `mode`, around a recording app, and what the checks need."""

    def __init__(self, kind: str, mode: Mode, errors: Errors) -> None:
        self.clock = Clock()
        self.fake = FakeLogto(clock=self.clock)
        self.errors = errors
        settings = mode.settings()
        store = settings.pop("store", None)
        config = make_config(self.fake, **settings)
        self.asgi_app = RecordingASGIApp()
        self.wsgi_app = RecordingWSGIApp()
        self.kind = kind
        self.loop = asyncio.new_event_loop()
        self.asgi = LogtoASGIMiddleware(self.asgi_app, config, store=store, http_client=self.fake.async_httpx_client(),
                                        clock=self.clock)
        self.wsgi = LogtoWSGIMiddleware(self.wsgi_app, config, store=store, http_client=self.fake.httpx_client(),
                                        clock=self.clock)

    def _fresh_failure_log(self) -> None:
        # Each example is judged alone: a bug logged (then rate-limited) by an earlier example
        # must show again, or the failing example would not reproduce while shrinking.
        for middleware in (self.asgi, self.wsgi):
            middleware.core.failures = FailureLog(logging.getLogger("logto_middleware"))

    def passthrough(self, request: dict[str, Any]) -> None:
        self._fresh_failure_log()
        if self.kind == "asgi":
            check_asgi_passthrough(self.loop, self.asgi, self.asgi_app, self.errors, request)
        else:
            check_wsgi_passthrough(self.wsgi, self.wsgi_app, self.errors, request)

    def route(self, request: dict[str, Any]) -> None:
        self._fresh_failure_log()
        if self.kind == "asgi":
            check_asgi_route(self.loop, self.asgi, self.asgi_app, self.errors, request)
        else:
            check_wsgi_route(self.wsgi, self.wsgi_app, self.errors, request)


@pytest.fixture
def rig(kind: str, mode: Mode, errors: Errors) -> Iterator[Rig]:
    made = Rig(kind, mode, errors)
    yield made
    made.loop.close()


def test_fuzz_other_requests_pass_through_byte_for_byte(rig: Rig) -> None:
    @PROFILE
    @given(requests(under_base=False))
    def check(request: dict[str, Any]) -> None:
        rig.passthrough(request)

    check()


def test_fuzz_routes_never_fail(rig: Rig) -> None:
    @PROFILE
    @given(requests(under_base=True))
    def check(request: dict[str, Any]) -> None:
        rig.route(request)

    check()


def test_fuzz_session_cookies_are_a_session_or_none(rig: Rig) -> None:
    @PROFILE
    @given(session_requests())
    def check(request: dict[str, Any]) -> None:
        if request["path"].startswith(BASE + "/"):
            rig.route(request)
        else:
            rig.passthrough(request)

    check()


@pytest.mark.parametrize("name", sorted(ROUTE_SEEDS))
def test_route_seed_never_fails(rig: Rig, name: str) -> None:
    rig.route(ROUTE_SEEDS[name])
