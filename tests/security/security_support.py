"""Helpers of the negative (security) suite: outcome assertions, a secret-leak watch on the
logs, a forging sign-in, extra browsers, and a fake provider with hostile transports.

Not a conftest: a second `conftest` module would shadow `tests/conftest.py`, which the suite
imports as `conftest`. Fixtures (`harness`, `make_harness`, `fake`, `clock`, `kind`) come from
`tests/conftest.py`; every test therefore runs once behind ASGI and once behind WSGI.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from conftest import ORIGIN, Harness
from starlette.testclient import TestClient

from logto_middleware.stores import MemoryStore, RedisStore
from logto_middleware.testing import FakeLogto

HTTPS_ORIGIN = "https://app.example"
SESSION = "logto.session-token"
AUTHJS_SESSION = "authjs.session-token"
SESSION_COOKIES = (SESSION, AUTHJS_SESSION)  # the session cookie's base name in either format
TRANSACTION = "logto.transaction"
CSRF = "logto.csrf-token"
AUTHJS_CSRF = "authjs.csrf-token"
OWN_COOKIES = (*SESSION_COOKIES, TRANSACTION, CSRF, AUTHJS_CSRF)  # every cookie base the middleware sets
ERROR_STATUS = {"AccessDenied": 403, "Verification": 400, "OAuthCallbackError": 400, "MissingCSRF": 400,
                "Configuration": 502, "ProviderUnavailable": 503}

PROVIDER_FAILURES = ("Configuration", "ProviderUnavailable")

Forge = Callable[[str, dict[str, Any]], str]


# -- session modes ------------------------------------------------------------------------------

MODES = ("logto", "authjs", "memory", "redis")


class Mode:
    """Where a test's sessions live: "logto" (the sealed Logto cookie, the default), "authjs"
    (Auth.js's JWE cookie), "memory" and "redis" (server-side: the cookie holds an encrypted
    session id). Every harness of one test shares one store, as the processes of one
    deployment do."""

    def __init__(self, name: str, redis_url: str | None = None) -> None:
        self.name = name
        self.server_side = name in ("memory", "redis")
        self._store: Any = None
        if name == "memory":
            self._store = MemoryStore()
        elif name == "redis":
            assert redis_url is not None
            self._store = RedisStore.from_url(redis_url, prefix="security:")

    def settings(self) -> dict[str, Any]:
        """Harness settings of this mode."""
        if self.name == "authjs":
            return {"session_format": "authjs"}
        return {"store": self._store} if self._store is not None else {}

    @property
    def session_cookie(self) -> str:
        return AUTHJS_SESSION if self.name == "authjs" else SESSION

    def __repr__(self) -> str:
        return self.name


# -- URLs and cookies ---------------------------------------------------------------------------

def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def parse_set_cookie(header: str) -> tuple[str, str, dict[str, str]]:
    """(name, value, attributes with lower-cased names) of one Set-Cookie header."""
    pair, *attrs = header.split(";")
    name, _, value = pair.partition("=")
    attributes: dict[str, str] = {}
    for attr in attrs:
        key, _, val = attr.strip().partition("=")
        attributes[key.lower()] = val
    return name.strip(), value.strip(), attributes


def is_deletion(header: str) -> bool:
    _, value, attrs = parse_set_cookie(header)
    return value == "" and attrs.get("max-age") == "0"


def cookie_base(name: str) -> str:
    for prefix in ("__Secure-", "__Host-"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def is_transaction(name: str) -> bool:
    """A transaction cookie: one per sign-in under way, `logto.transaction.<id of its state>`."""
    return cookie_base(name).startswith(TRANSACTION + ".")


def transaction_cookies(client: httpx.Client) -> dict[str, str]:
    return {name: value for name, value in jar(client).items() if is_transaction(name)}


def transaction_cookie(client: httpx.Client) -> tuple[str, str]:
    """(name, value) of the browser's one transaction cookie."""
    [(name, value)] = transaction_cookies(client).items()
    return name, value


def transaction_deleted(response: httpx.Response) -> bool:
    return any(is_transaction(name) for name in deleted_names(response))


def is_session_cookie(name: str) -> bool:
    """A session cookie (or a chunk of one) of either format, on http or https."""
    return cookie_base(name).startswith(SESSION_COOKIES)


def is_own_cookie(name: str) -> bool:
    """A cookie of the middleware's (any format, chunk or prefix)."""
    return cookie_base(name).startswith(OWN_COOKIES)


def csrf_cookie(harness: Harness) -> str:
    """The CSRF cookie's base name in the harness's format."""
    return AUTHJS_CSRF if harness.config.session_format == "authjs" else CSRF


def server_side(harness: Harness) -> bool:
    """Whether the harness keeps sessions in a store (its cookie holds only a session id, never chunked)."""
    return bool(harness.middleware.core.manager.server_side)


def session_written(response: httpx.Response) -> list[str]:
    """Set-Cookie headers that write (not delete) a session cookie."""
    return [h for h in set_cookies(response) if is_session_cookie(parse_set_cookie(h)[0]) and not is_deletion(h)]


def deleted_names(response: httpx.Response) -> set[str]:
    return {parse_set_cookie(h)[0] for h in set_cookies(response) if is_deletion(h)}


def cookie_header(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """An explicit Cookie header (it replaces the client's jar for that request)."""
    return {"cookie": "; ".join(f"{name}={value}" for name, value in pairs)}


def jar(client: httpx.Client) -> dict[str, str]:
    return {cookie.name: cookie.value or "" for cookie in client.cookies.jar}


# -- outcomes -----------------------------------------------------------------------------------

def error_location(code: str, origin: str = ORIGIN) -> str:
    return f"{origin}/api/auth/error?error={code}"


def assert_error_redirect(response: httpx.Response, code: str, origin: str = ORIGIN) -> None:
    """The middleware's error page redirect for `code`, and no session written."""
    assert response.status_code == 302, (response.status_code, response.text)
    assert response.headers["location"] == error_location(code, origin)
    assert session_written(response) == []


def assert_rejected_callback(harness: Harness, response: httpx.Response, code: str, *, cleared: bool = True) -> None:
    """A refused callback: the error page, no session, the one-shot transaction cookie of its
    state cleared (none when `cleared` is false: the state is another browser's, and this
    browser's own sign-ins go on), and the browser still anonymous; the error page answers the
    code's status, never 500."""
    assert_error_redirect(response, code)
    if not cleared:
        assert not transaction_deleted(response), response.headers.get_list("set-cookie")
    elif code not in PROVIDER_FAILURES:
        # (Provider failures keep it: see test_callback.py::test_provider_failure_at_callback_clears_transaction)
        assert transaction_deleted(response)
    page = harness.client.get(response.headers["location"])
    assert page.status_code == ERROR_STATUS[code]
    assert f"<code>{code}</code>".encode() in page.content
    assert harness.me()["authenticated"] is False
    assert harness.session_cookie_names() == []


def assert_signed_in(harness: Harness, response: httpx.Response, user: str = "alice") -> None:
    assert response.status_code == 302, response.text
    assert origin_of(response.headers["location"]) == ORIGIN
    assert session_written(response)
    body = harness.me()
    assert body["authenticated"] is True
    assert body["id"] == harness.fake.user_claims(user)["sub"]


def assert_safe_location(location: str, origin: str = ORIGIN) -> None:
    """A Location every browser resolves on `origin`: printable ASCII only (no tab, newline,
    backslash or byte a browser would strip or fold), and the same scheme, host and port."""
    assert all(0x21 <= ord(c) <= 0x7E for c in location), repr(location)
    assert "\\" not in location, location
    assert location.startswith(origin + "/"), location
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}" == origin and "@" not in parts.netloc, location


# -- the secret watch ---------------------------------------------------------------------------

class SecretWatch:
    """Records every secret a test's sign-ins produce (tokens, codes, PKCE verifiers, cookie
    values, client secret, AUTH_SECRET) and checks that no log record contains one.

    It owns the fake's `token_response_hook` to see the tokens; tests that tamper with the
    token response set `rewrite` (same contract as the hook) instead.
    """

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        self.caplog = caplog
        self.rewrite: Callable[[dict[str, Any]], dict[str, Any] | httpx.Response | None] | None = None
        self.values: set[str] = set()
        self.origins: set[str] = {ORIGIN, HTTPS_ORIGIN}
        self._fakes: list[FakeLogto] = []
        self._harnesses: list[Harness] = []

    def attach(self, harness: Harness) -> Harness:
        self._harnesses.append(harness)
        self.values.add(harness.config.client_secret)
        self.values.update(harness.config.secrets)
        self.watch_client(harness.client)
        fake = getattr(harness.fake, "fake", harness.fake)  # the real fake behind a RoutedFake
        if not any(f is fake for f in self._fakes):
            self._fakes.append(fake)
            fake.token_response_hook = self._hook
        return harness

    def watch_client(self, client: httpx.Client) -> httpx.Client:
        client.event_hooks["response"] = [*client.event_hooks["response"], self._on_response]
        self.origins.add(str(client.base_url).rstrip("/"))
        return client

    def add(self, *values: str | None) -> None:
        self.values.update(v for v in values if v)

    def _hook(self, body: dict[str, Any]) -> dict[str, Any] | httpx.Response | None:
        self._record_tokens(body)
        if self.rewrite is None:
            return None
        result = self.rewrite(body)
        if isinstance(result, dict):
            self._record_tokens(result)
        elif result is None:
            self._record_tokens(body)
        return result

    def _record_tokens(self, body: dict[str, Any]) -> None:
        for name in ("access_token", "refresh_token", "id_token"):
            if isinstance(body.get(name), str):
                self.values.add(body[name])

    def _on_response(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            _, value, _ = parse_set_cookie(header)
            self.values.add(value)
            self.values.update(value.split("|"))
        location = response.headers.get("location")
        if location:
            self.add(query_of(location).get("code"))

    def secrets(self) -> set[str]:
        found = set(self.values)
        for fake in self._fakes:
            for _, _, params in fake.requests:
                for name in ("code", "code_verifier", "refresh_token", "token", "id_token_hint"):
                    found.add(params.get(name, ""))
        for harness in self._harnesses:
            found.update(jar(harness.client).values())
        # Short values (an app's "1", a chunk index) are not secrets and would match anywhere.
        return {s for s in found if len(s) >= 16}

    def _own_request_log(self, record: logging.LogRecord) -> bool:
        # httpx logs every request of the test's own browser (callback URLs carry the code);
        # those records are the test client's, not the middleware's.
        return record.name.startswith(("httpx", "httpcore")) and any(
            origin in record.getMessage() for origin in self.origins)

    def assert_logs_clean(self) -> None:
        secrets = self.secrets()
        formatter = logging.Formatter()
        # In a fixture's teardown `caplog.records` holds only the teardown's records: read every phase.
        records = [*self.caplog.get_records("setup"), *self.caplog.get_records("call"), *self.caplog.records]
        for record in records:
            if self._own_request_log(record):
                continue
            text = record.getMessage()
            if record.exc_info:
                text += formatter.formatException(record.exc_info)
            leaked = [s[:12] + "..." for s in secrets if s in text]
            assert not leaked, f"log record {record.name}:{record.levelname} leaks {leaked}: {text[:300]}"

    def errors_logged(self) -> list[logging.LogRecord]:
        """Records of an exception inside the middleware (its catch-all logs these)."""
        return [r for r in self.caplog.records if r.name == "logto_middleware" and r.levelno >= logging.ERROR
                and "failed on" in r.getMessage()]


# -- browsers and sign-ins ----------------------------------------------------------------------

def new_client(harness: Harness, base_url: str = ORIGIN) -> httpx.Client:
    """Another browser (own cookie jar) in front of the same middleware."""
    if harness.kind == "asgi":
        return TestClient(harness.middleware, base_url=base_url, follow_redirects=False)
    return httpx.Client(transport=httpx.WSGITransport(app=harness.middleware), base_url=base_url,
                        follow_redirects=False)


def begin_sign_in(harness: Harness, client: httpx.Client | None = None, login: str = "alice",
                  **params: str) -> tuple[str, dict[str, str]]:
    """Start a sign-in in `client` and authorize at the fake: (callback URL, authorization request)."""
    browser = client or harness.client
    start = browser.get("/api/auth/signin", params=params)
    assert start.status_code == 302, start.text
    location = start.headers["location"]
    return harness.fake.authorize(location, login=login), query_of(location)


def forged_sign_in(harness: Harness, watch: SecretWatch, forge: Forge, login: str = "alice") -> httpx.Response:
    """A sign-in whose token response carries `forge(nonce, token_body)` as the ID token."""
    callback, request = begin_sign_in(harness, login=login)
    nonce = request["nonce"]

    def rewrite(body: dict[str, Any]) -> dict[str, Any]:
        forged = forge(nonce, body)
        watch.add(forged)
        return {**body, "id_token": forged}

    watch.rewrite = rewrite
    try:
        return harness.client.get(callback)
    finally:
        watch.rewrite = None


# -- a provider with hostile transports ---------------------------------------------------------

Override = Callable[[httpx.Request], httpx.Response | None]


class RoutedFake:
    """The fake provider, with some requests answered by `override` (return None to let the
    fake answer, raise an httpx error to simulate the network). Pass it to `Harness`."""

    _OWN = frozenset({"fake", "override"})

    def __init__(self, fake: FakeLogto, override: Override) -> None:
        object.__setattr__(self, "fake", fake)
        object.__setattr__(self, "override", override)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fake, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # Knobs such as token_response_hook or jwks_override belong to the real fake.
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.fake, name, value)

    def _transport(self) -> httpx.MockTransport:
        inner = self.fake.transport()

        def handle(request: httpx.Request) -> httpx.Response:
            answer = self.override(request)
            return answer if answer is not None else inner.handle_request(request)

        return httpx.MockTransport(handle)

    def httpx_client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(transport=self._transport(), base_url=self.fake.origin, **kwargs)

    def async_httpx_client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self._transport(), base_url=self.fake.origin, **kwargs)


class Trickle(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A hostile response body, for a sync or an async client: `chunk` after each `pause`
    seconds, endlessly but for a bound (`lasting` seconds, `size` bytes) so that a test of a
    missing deadline or cap fails instead of hanging. `sent` counts the bytes read from it."""

    def __init__(self, chunk: bytes, *, pause: float = 0.0, lasting: float = 3.0, size: int = 32 << 20) -> None:
        self.chunk, self.pause, self.lasting, self.size = chunk, pause, lasting, size
        self.sent = 0
        self._end = 0.0

    def _next(self) -> bytes | None:
        if self.sent >= self.size or time.monotonic() > self._end:
            return None
        self.sent += len(self.chunk)
        return self.chunk

    def __iter__(self) -> Iterator[bytes]:
        self._end = time.monotonic() + self.lasting
        while True:
            if self.pause:
                time.sleep(self.pause)
            chunk = self._next()
            if chunk is None:
                return
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self._end = time.monotonic() + self.lasting
        while True:
            await asyncio.sleep(self.pause)
            chunk = self._next()
            if chunk is None:
                return
            yield chunk
