"""`LogtoASGIMiddleware`: Logto sign-in for any ASGI app (Starlette, FastAPI, ...)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from ._core.handler import LogtoCore, Passage
from ._messages import Request, Response, url_root
from .bearer import BearerValidator
from .config import LogtoConfig
from .flow import AsyncDriver
from .session import AnonymousAuth, AsyncSession
from .stores import CookieStore, SessionStore

if TYPE_CHECKING:
    import httpx  # imported by the driver, which makes its client on the first provider call

__all__ = ["LogtoASGIMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 64 * 1024


class LogtoASGIMiddleware:
    """Wraps an ASGI app: serves the routes under `config.base_path` and puts the user on every
    request as `scope["user"]` and `scope["auth"]`, the way Starlette's AuthenticationMiddleware
    does, so `request.user` and `@requires("authenticated")` work.

    `bearer`: a `BearerValidator` for an API in the same app (its caches; its keys fetched with
    this middleware's HTTP client): a request with `Authorization: Bearer` is then the token's
    (`user.source == "bearer"`, a bad token 401), any other the session's.
    `bearer_only`: paths (within the app, e.g. `"/api"`) where only a token authenticates, the
    cookie is not read. A token's user an outer bearer middleware authenticated is kept (our
    routes are still served)."""

    def __init__(self, app: ASGIApp, config: LogtoConfig | None = None, *,
                 http_client: httpx.AsyncClient | None = None, store: SessionStore | CookieStore | None = None,
                 clock: Callable[[], float] = time.time, bearer: BearerValidator | None = None,
                 bearer_only: Iterable[str] = ()) -> None:
        self.app = app
        self.config = config if config is not None else LogtoConfig.from_env()
        self.driver = AsyncDriver(http_client, timeout=self.config.http_timeout, deadline=self.config.call_deadline)
        self.core = LogtoCore(self.config, store=store, clock=clock, bearer=bearer, bearer_only=bearer_only,
                              session_factory=partial(AsyncSession, profile=self.config.profile, run=self.driver.run,
                                                      base_path=self.config.base_path))
        # One for every anonymous request; it knows where to sign in (logto_middleware.fastapi).
        self.anonymous_auth = AnonymousAuth(base_path=self.config.base_path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        websocket = scope["type"] == "websocket"
        request = _request_from_scope(scope)
        if self.core.keeps_user(scope.get("user"), request, websocket=websocket):
            scope["logto.base_path"] = self.core.base_path(request.root)  # as on every request: see below
            await self.app(scope, receive, send)
            return
        if request.method == "POST" and not websocket and self.core.is_route(request.path, request.root):
            body = await _read_body(receive)
            if body is None:
                await _send_response(send, Response.json({"error": "PayloadTooLarge"}, 413))
                return
            request = request.with_body(body)
        try:
            outcome = await self.driver.run(self.core.handle(request, websocket=websocket))
        except Exception as exc:
            outcome = self.core.fail_closed(exc, request, websocket=websocket)
        if isinstance(outcome, Response):
            if websocket:  # refused (a bad bearer token) or unavailable: no HTTP answer on a websocket
                await send({"type": "websocket.close", "code": 1008 if outcome.status < 500 else 1011})
                return
            await _send_response(send, outcome)
            return
        scope["user"] = outcome.user
        scope["auth"] = outcome.session or outcome.credentials or self.anonymous_auth
        scope["logto.base_path"] = self.core.base_path(request.root)  # on the site, prefix included
        if websocket or (outcome.session is None and not outcome.may_write):
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, self._send_with_cookies(outcome, send))

    def _send_with_cookies(self, passage: Passage, send: Send) -> Send:
        """`send`, with the session's Set-Cookie headers added to the response's start."""

        # A plain function, not a coroutine: a message goes straight to `send` unless writing the
        # session needs the store's I/O.
        def send_with_cookies(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                cookies = passage.finish_without_io()
                if cookies is None:
                    return self._send_start_after_io(passage, message, send)
                if cookies:
                    message = _with_cookies(message, cookies)
            return send(message)

        return send_with_cookies

    async def _send_start_after_io(self, passage: Passage, message: Message, send: Send) -> None:
        cookies = await self.driver.run(passage.finish())
        await send(_with_cookies(message, cookies) if cookies else message)


def _with_cookies(message: Message, cookies: Sequence[str]) -> Message:
    # A new message: the app's may be one it sends on every response.
    return {**message, "headers": [*message.get("headers", ()),
                                   *((b"set-cookie", cookie.encode("latin-1")) for cookie in cookies)]}


class _ScopeHeaders(Mapping[str, str]):
    """The headers of an ASGI scope, decoded on demand: a request reads two or three of them
    (`get` scans the raw pairs, as Starlette's `Headers` does); a repeated header's values are
    joined (cookies with "; ")."""

    __slots__ = ("_all", "_raw", "_read")

    def __init__(self, raw: Sequence[tuple[bytes, bytes]]) -> None:
        self._raw = raw
        self._read: dict[str, str | None] = {}  # the headers read so far
        self._all: dict[str, str] | None = None

    def get(self, name: str, default: Any = None) -> Any:
        if name in self._read:
            value = self._read[name]
        else:
            key = name.encode("latin-1")  # ASGI header names are lower-case already
            values = [value for raw_name, value in self._raw if raw_name == key]
            value = self._read[name] = (
                (b"; " if name == "cookie" else b", ").join(values).decode("latin-1") if values else None)
        return default if value is None else value

    def __getitem__(self, name: str) -> str:
        value: str | None = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def _decoded(self) -> dict[str, str]:
        if self._all is None:
            self._all = {name: self[name] for name in dict.fromkeys(n.decode("latin-1") for n, _ in self._raw)}
        return self._all

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())


def _request_from_scope(scope: Scope) -> Request:
    server = scope.get("server")
    server_host = f"{server[0]}:{server[1]}" if server and server[1] is not None else None
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root:
        # The ASGI spec (and Starlette's `Mount`, uvicorn's `--root-path` since 0.26) puts the
        # root path in `path` too; older servers left it out: both are read as the path within
        # the app.
        prefix = root.rstrip("/")
        if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
            path = path[len(prefix):] or "/"
        root = url_root(root)
    return Request(method=scope.get("method", "GET"), path=path,
                   query_string=scope.get("query_string", b"").decode("latin-1"),
                   headers=_ScopeHeaders(scope.get("headers", ())), scheme=scope.get("scheme", "http"),
                   server=server_host, root=root)


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
