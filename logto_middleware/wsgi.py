"""`LogtoWSGIMiddleware`: Logto sign-in for any WSGI app (Flask, Django, ...)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._core.handler import LogtoCore, Passage
from ._messages import Request, Response, url_root
from .bearer import BearerValidator
from .config import LogtoConfig
from .flow import SyncDriver
from .session import SyncSession
from .stores import CookieStore, SessionStore

if TYPE_CHECKING:
    import httpx  # imported by the driver, which makes its client on the first provider call

__all__ = ["LogtoWSGIMiddleware"]

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

MAX_BODY = 64 * 1024


class LogtoWSGIMiddleware:
    """Wraps a WSGI app: serves the routes under `config.base_path` and puts the user and the
    session on every request as `environ["logto.user"]` and `environ["logto.session"]`.

    `bearer`: a `BearerValidator` for an API in the same app (its caches; its keys fetched with
    this middleware's HTTP client): a request with `Authorization: Bearer` is then the token's
    (`user.source == "bearer"`, no session, a bad token 401), any other the session's.
    `bearer_only`: paths (within the app, e.g. `"/api"`) where only a token authenticates, the
    cookie is not read. A token's user an outer bearer middleware authenticated is kept (our
    routes are still served)."""

    def __init__(self, app: WSGIApp, config: LogtoConfig | None = None, *,
                 http_client: httpx.Client | None = None, store: SessionStore | CookieStore | None = None,
                 clock: Callable[[], float] = time.time, bearer: BearerValidator | None = None,
                 bearer_only: Iterable[str] = ()) -> None:
        self.app = app
        self.config = config if config is not None else LogtoConfig.from_env()
        self.driver = SyncDriver(http_client, timeout=self.config.http_timeout, deadline=self.config.call_deadline)
        self.core = LogtoCore(self.config, store=store, clock=clock, bearer=bearer, bearer_only=bearer_only,
                              session_factory=partial(SyncSession, profile=self.config.profile, run=self.driver.run))
        self.core.user_code.require_sync()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = _request_from_environ(environ, _path(environ))
        if self.core.keeps_user(environ.get("logto.user"), request):
            environ.setdefault("logto.session", None)
            environ["logto.base_path"] = self.core.base_path(request.root)
            return self.app(environ, start_response)
        if request.method == "POST" and self.core.is_route(request.path, request.root):
            body = _read_body(environ)
            if body is None:
                return _respond(start_response, Response.json({"error": "PayloadTooLarge"}, 413))
            request = request.with_body(body)
        try:
            outcome = self.driver.run(self.core.handle(request))
        except Exception as exc:
            outcome = self.core.fail_closed(exc, request)
        if isinstance(outcome, Response):
            return _respond(start_response, outcome)
        environ["logto.user"] = outcome.user
        environ["logto.session"] = outcome.session
        environ["logto.base_path"] = self.core.base_path(request.root)
        if outcome.session is None and not outcome.may_write:
            return self.app(environ, start_response)
        return self.app(environ, self._start_response_with_cookies(outcome, start_response))

    def _start_response_with_cookies(self, passage: Passage, start_response: StartResponse) -> StartResponse:
        """`start_response`, with the session's Set-Cookie headers added."""

        def start_response_with_cookies(status: str, headers: list[tuple[str, str]],
                                        exc_info: ExcInfo | None = None) -> Any:
            cookies = passage.finish_without_io()
            if cookies is None:
                cookies = self.driver.run(passage.finish())
            if cookies:
                headers = headers + [("Set-Cookie", cookie) for cookie in cookies]
            return start_response(status, headers, exc_info)

        return start_response_with_cookies


class _EnvironHeaders(Mapping[str, str]):
    """The headers of a WSGI environ, read on demand (`HTTP_*` keys, `CONTENT_TYPE` and
    `CONTENT_LENGTH`): a request reads two or three of them."""

    __slots__ = ("_environ",)

    def __init__(self, environ: dict[str, Any]) -> None:
        self._environ = environ

    @staticmethod
    def _key(name: str) -> str:
        key = name.upper().replace("-", "_")
        return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key

    def get(self, name: str, default: Any = None) -> Any:
        value = self._environ.get(self._key(name))
        return value if value else default

    def __getitem__(self, name: str) -> str:
        value: str | None = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        for key, value in self._environ.items():
            if key[:5] == "HTTP_" or (key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value):
                yield key.removeprefix("HTTP_").replace("_", "-").lower()

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _request_from_environ(environ: dict[str, Any], path: str) -> Request:
    server = f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
    script_name = environ.get("SCRIPT_NAME")
    return Request(method=environ.get("REQUEST_METHOD", "GET").upper(), path=path,
                   query_string=environ.get("QUERY_STRING", ""), headers=_EnvironHeaders(environ),
                   scheme=environ.get("wsgi.url_scheme", "http"), server=server,
                   root=url_root(_decoded(script_name)) if script_name else "")


def _path(environ: dict[str, Any]) -> str:
    return _decoded(environ.get("PATH_INFO", "/")) or "/"


def _decoded(raw: str) -> str:
    # PEP 3333 hands paths over as latin-1-decoded bytes.
    return raw.encode("latin-1").decode("utf-8", "replace") if not raw.isascii() else raw


def _read_body(environ: dict[str, Any]) -> bytes | None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        return None
    stream = environ.get("wsgi.input")
    return stream.read(length) if stream is not None and length > 0 else b""


_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


def _respond(start_response: StartResponse, response: Response) -> list[bytes]:
    headers = [*response.headers, ("Content-Length", str(len(response.body)))]
    start_response(_STATUS_LINES.get(response.status) or f"{response.status} ", headers)
    return [response.body]
