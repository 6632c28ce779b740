"""`LogtoASGIMiddleware`: Logto sign-in for any ASGI app (Starlette, FastAPI, ...)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import httpx
from starlette.authentication import AuthCredentials

from .cache import BoundedCache
from .config import LogtoConfig
from .core import ANONYMOUS, LogtoCore, Passage
from .flow import AsyncDriver, Flow
from .messages import Request, Response
from .session import AsyncSession
from .stores import CookieStore, SessionStore

__all__ = ["LogtoASGIMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 64 * 1024
_ANONYMOUS_AUTH = AuthCredentials()


class LogtoASGIMiddleware:
    """Wraps an ASGI app: serves the routes under `config.base_path` and puts the user on every
    request as `scope["user"]` and `scope["auth"]`, the way Starlette's AuthenticationMiddleware
    does, so `request.user` and `@requires("authenticated")` work."""

    def __init__(self, app: ASGIApp, config: LogtoConfig | None = None, *,
                 http_client: httpx.AsyncClient | None = None, store: SessionStore | CookieStore | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.config = config if config is not None else LogtoConfig.from_env()
        self.driver = AsyncDriver(http_client or httpx.AsyncClient(timeout=self.config.http_timeout))
        profile, run = self.config.profile, self.driver.run
        self.core = LogtoCore(self.config, store=store, clock=clock,
                              session_factory=lambda data, tokens, user: AsyncSession(data, profile, tokens, run, user))
        self._raw_cookies: BoundedCache[int, tuple[Sequence[str], list[tuple[bytes, bytes]]]] = BoundedCache(64)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        websocket = scope["type"] == "websocket"
        flow: Flow[Response | Passage] | None = None
        if websocket or not self.core.is_route(scope["path"]):
            cookie, authorization = _session_headers(scope)
            if not self.core.may_have_session(cookie, authorization):
                # The common anonymous request: nothing to read, nothing to write.
                scope["user"], scope["auth"] = ANONYMOUS, _ANONYMOUS_AUTH
                await self.app(scope, receive, send)
                return
            if not websocket:
                quick = self.core.quick_passage(cookie, scope.get("scheme", "http"))
                if isinstance(quick, Passage):  # the common signed-in request
                    if quick.pending is not None:  # its tokens are being refreshed: wait
                        # Waiting requests keep this frame: not its copy of the Cookie header.
                        del cookie, authorization
                        try:
                            quick.settle(await self.driver.join(quick.pending))
                        except Exception as exc:
                            if not quick.settle_failure(exc):
                                self.core.report_failure(exc, scope.get("method", "GET"), scope["path"])
                    await self.app(scope, receive, self._bind(quick, scope, send))
                    return
                flow = quick
                # A request waiting on a refresh keeps this frame: not its copy of the Cookie header.
                del cookie, authorization
        if flow is None:
            request = _request_from_scope(scope)
            if not websocket and request.method == "POST" and self.core.is_route(request.path):
                body = await _read_body(receive)
                if body is None:
                    await _send_response(send, Response.json({"error": "PayloadTooLarge"}, 413))
                    return
                request = request.with_body(body)
            flow = self.core.handle(request, websocket=websocket)
        try:
            outcome = await self.driver.run(flow)
        except Exception as exc:
            path = scope.get("path", "/")
            self.core.report_failure(exc, scope.get("method", "GET"), path)
            if websocket or not self.core.is_route(path):
                outcome = Passage(self.core, None)  # fail closed: the app sees an anonymous request
            else:
                outcome = Response.json({"error": "InternalError"}, 500)
        if isinstance(outcome, Response):
            await _send_response(send, outcome)
            return
        if websocket:
            scope["user"] = outcome.user
            scope["auth"] = outcome.session if outcome.session is not None else _ANONYMOUS_AUTH
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, self._bind(outcome, scope, send))

    def _bind(self, passage: Passage, scope: Scope, send: Send) -> Send:
        """Put the user on the scope; the `send` returned adds the session's cookies to the
        app's response."""
        scope["user"] = passage.user
        scope["auth"] = passage.session if passage.session is not None else _ANONYMOUS_AUTH

        # A plain function, not a coroutine: a message goes straight to `send` unless writing the
        # session needs the store's I/O.
        def send_with_cookies(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                cookies = passage.finish_without_io()
                if cookies is None:
                    return self._send_start_after_io(passage, message, send)
                if cookies:
                    message = self._with_cookies(message, cookies)
            return send(message)

        return send_with_cookies

    async def _send_start_after_io(self, passage: Passage, message: Message, send: Send) -> None:
        cookies = await self.driver.run(passage.finish())
        await send(self._with_cookies(message, cookies) if cookies else message)

    def _with_cookies(self, message: Message, cookies: Sequence[str]) -> Message:
        # The core shares one tuple of headers among the requests that write the same session
        # (a refresh storm): encode it once too.
        hit = self._raw_cookies.get(id(cookies))
        if hit is not None and hit[0] is cookies:
            encoded = hit[1]
        else:
            encoded = [(b"set-cookie", cookie.encode("latin-1")) for cookie in cookies]
            if isinstance(cookies, tuple):
                self._raw_cookies.set(id(cookies), (cookies, encoded))
        # A new message: the app's may be one it sends on every response.
        written = dict(message)
        written["headers"] = [*message.get("headers", ()), *encoded]
        return written


def _session_headers(scope: Scope) -> tuple[str, str]:
    """The Cookie and Authorization headers, without decoding the others."""
    cookies: list[bytes] = []
    authorization = b""
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            cookies.append(value)
        elif name == b"authorization":
            authorization = value
    return b"; ".join(cookies).decode("latin-1"), authorization.decode("latin-1")


def _request_from_scope(scope: Scope) -> Request:
    raw = scope.get("headers", ())
    # ASGI header names are lower-case already.
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in raw}
    if len(headers) != len(raw):  # a repeated header: join the values (cookies with "; ")
        headers = {}
        for raw_name, raw_value in raw:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            if name in headers:
                value = headers[name] + ("; " if name == "cookie" else ", ") + value
            headers[name] = value
    server = scope.get("server")
    server_host = f"{server[0]}:{server[1]}" if server and server[1] is not None else None
    return Request(method=scope.get("method", "GET"), path=scope.get("path", "/"),
                   query_string=scope.get("query_string", b"").decode("latin-1"),
                   headers=headers, scheme=scope.get("scheme", "http"), server=server_host)


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send_response(send: Send, response: Response) -> None:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers]
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
