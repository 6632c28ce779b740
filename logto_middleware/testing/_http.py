"""Transport-neutral HTTP plumbing for `FakeLogto`.

Every endpoint is a plain function ``FakeRequest -> Reply``; the Starlette app and
the ``httpx.MockTransport`` below are thin adapters over such a handler.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

if TYPE_CHECKING:  # the ASGI app needs Starlette; the httpx transport (tests) does not
    from starlette.applications import Starlette

Headers = list[tuple[str, str]]
NO_STORE: Headers = [("cache-control", "no-store"), ("pragma", "no-cache")]
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "content-encoding"})
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass(frozen=True)
class FakeRequest:
    """A parsed HTTP request: query and urlencoded form parameters, lower-cased headers."""

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]
    duplicates: frozenset[str] = frozenset()
    multi: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Every value of every query and form parameter, query values first."""
    form_multi: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Every value of every form parameter."""

    @property
    def params(self) -> dict[str, str]:
        """Query and form parameters merged (form wins)."""
        return {**self.query, **self.form}

    def values(self, name: str) -> tuple[str, ...]:
        """All values of parameter ``name`` (query, then form); empty if absent."""
        return self.multi.get(name, ())

    def form_values(self, name: str) -> tuple[str, ...]:
        """All values of form parameter ``name``; empty if absent."""
        return self.form_multi.get(name, ())

    def cookie(self, name: str) -> str | None:
        """The value of cookie ``name``, if sent."""
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(self.headers.get("cookie", ""))
        except CookieError:
            return None
        morsel = jar.get(name)
        return morsel.value if morsel is not None else None


@dataclass
class Reply:
    """A status, headers and body, ready for either adapter."""

    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive)."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


Handler = Callable[[FakeRequest], Reply]


def _parse(text: str, multi: dict[str, tuple[str, ...]]) -> tuple[dict[str, str], set[str]]:
    """Parse urlencoded text; empty values count as absent (RFC 6749 §3.1).

    Returns the first value of each parameter and the repeated names; every value is
    also collected in ``multi``.
    """
    values: dict[str, str] = {}
    dupes: set[str] = set()
    for key, value in parse_qsl(text, keep_blank_values=False):
        if key in values:
            dupes.add(key)
        values.setdefault(key, value)
        multi[key] = (*multi.get(key, ()), value)
    return values, dupes


def make_request(
    method: str, path: str, raw_query: str, headers: Iterable[tuple[str, str]], body: bytes
) -> FakeRequest:
    """Build a `FakeRequest` from raw request parts."""
    merged: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        sep = "; " if key == "cookie" else ", "
        merged[key] = f"{merged[key]}{sep}{value}" if key in merged else value
    query_multi: dict[str, tuple[str, ...]] = {}
    form_multi: dict[str, tuple[str, ...]] = {}
    query, dupes = _parse(raw_query, query_multi)
    form: dict[str, str] = {}
    if merged.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form, form_dupes = _parse(body.decode("utf-8", "replace"), form_multi)
        dupes |= form_dupes | (form.keys() & query.keys())
    multi = dict(query_multi)
    for key, values in form_multi.items():
        multi[key] = (*multi.get(key, ()), *values)
    return FakeRequest(
        method.upper(), path, query, form, merged, frozenset(dupes), multi, form_multi
    )


def json_reply(
    data: Any,
    status: int = 200,
    headers: Iterable[tuple[str, str]] = (),
    content_type: str = "application/json",
) -> Reply:
    """A JSON response."""
    body = json.dumps(data).encode()
    return Reply(status, [("content-type", f"{content_type}; charset=utf-8"), *headers], body)


def html_reply(html: str, status: int = 200, headers: Iterable[tuple[str, str]] = ()) -> Reply:
    """An HTML response that is never cached."""
    ctype = ("content-type", "text/html; charset=utf-8")
    return Reply(status, [ctype, *NO_STORE, *headers], html.encode())


def redirect_reply(
    url: str, params: Mapping[str, str | None], headers: Iterable[tuple[str, str]] = ()
) -> Reply:
    """A 302 to ``url`` with ``params`` (None values skipped) added to its query."""
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    if extra:
        url = f"{url}{'&' if urlsplit(url).query else '?'}{extra}"
    return Reply(302, [("location", url), *NO_STORE, *headers])


def asgi_app(handler: Handler) -> Starlette:
    """A Starlette app that routes every request to ``handler``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def endpoint(request: Request) -> Response:
        body = await request.body()
        fake_request = make_request(
            request.method, request.url.path, request.url.query, request.headers.items(), body
        )
        reply = handler(fake_request)
        response = Response(reply.body, status_code=reply.status)
        for name, value in reply.headers:
            if name.lower() not in _HOP_HEADERS:
                response.headers.append(name, value)
        return response

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=_METHODS)])


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def mock_transport(handler: Handler, base_url: str) -> httpx.MockTransport:
    """An ``httpx.MockTransport`` serving ``handler`` at ``base_url``'s origin only."""
    origin = _origin(httpx.URL(base_url))

    def handle(request: httpx.Request) -> httpx.Response:
        if _origin(request.url) != origin:
            raise httpx.ConnectError(f"FakeLogto does not serve {request.url}", request=request)
        fake_request = make_request(
            request.method,
            request.url.path,
            request.url.query.decode("ascii"),
            request.headers.multi_items(),
            request.content,
        )
        reply = handler(fake_request)
        headers = [(k, v) for k, v in reply.headers if k.lower() not in _HOP_HEADERS]
        return httpx.Response(reply.status, headers=headers, content=reply.body)

    return httpx.MockTransport(handle)
