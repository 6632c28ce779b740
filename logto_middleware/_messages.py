"""A plain description of a request and of a response, whatever the server interface."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from urllib.parse import quote, unquote_plus

from ._sessions.cookies import CookieJar, parse_cookie_header

__all__ = ["Request", "Response", "url_root"]

_MAX_QUERY = 8192
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))  # built once, unlike json.dumps(separators=...)


@lru_cache(maxsize=64)
def url_root(prefix: str) -> str:
    """The prefix an app is served under (ASGI `root_path`, WSGI `SCRIPT_NAME`: a decoded path)
    as it goes in our URLs: percent-encoded, without a final "/". "" when it is no path: a server
    or proxy fix that takes it from a request header could put anything there, and a prefix such
    as `@evil.example` after the origin would move our redirects to another host."""
    root = prefix.rstrip("/")
    if not root.startswith("/") or any(ord(c) < 0x20 or c == "\x7f" for c in root):
        return ""
    return quote(root, safe="/-._~!$&'()*+,;=:@")


class Request:
    """What the core needs to know of a request, whatever the server interface. Cookies, query
    and form are parsed on first use."""

    __slots__ = ("_cookies", "_form", "_query", "body", "headers", "method", "path", "query_string", "root",
                 "scheme", "server")

    def __init__(self, method: str, path: str, query_string: str, headers: Mapping[str, str], scheme: str,
                 server: str | None = None, body: bytes = b"", root: str = "") -> None:
        # `path` is the path within the app; `root` the prefix the app is served under (ASGI
        # `root_path`, WSGI `SCRIPT_NAME`), "" when none, never ending with "/".
        self.method, self.path, self.query_string, self.headers = method, path, query_string, headers
        self.scheme, self.server, self.body, self.root = scheme, server, body, root
        self._cookies: CookieJar | None = None
        self._query: dict[str, str] | None = None
        self._form: dict[str, str] | None = None

    def with_body(self, body: bytes) -> Request:
        return Request(self.method, self.path, self.query_string, self.headers, self.scheme, self.server, body,
                       self.root)

    @property
    def cookies(self) -> CookieJar:
        if self._cookies is None:
            self._cookies = parse_cookie_header(self.headers.get("cookie", ""))
        return self._cookies

    @property
    def query(self) -> dict[str, str]:
        """The query string's parameters, first value of each; malformed pairs are dropped."""
        if self._query is None:
            self._query = _first_values(self.query_string[:_MAX_QUERY])
        return self._query

    @property
    def form(self) -> dict[str, str]:
        if self._form is None:
            form = "application/x-www-form-urlencoded" in self.headers.get("content-type", "")
            self._form = _first_values(self.body.decode("utf-8", "replace")) if form else {}
        return self._form

    def wants_json(self) -> bool:
        return "application/json" in self.headers.get("accept", "")


_decode = partial(unquote_plus, errors="replace")
# The short encoded parts that recur (the callback's `iss`, callback URLs) are decoded once;
# long ones are not kept (the cache holds what any client sends).
_decode_cached = lru_cache(maxsize=128)(_decode)


def _decoded(part: str) -> str:
    return _decode_cached(part) if len(part) <= 512 else _decode(part)


def _first_values(text: str) -> dict[str, str]:
    """`parse_qsl(text, keep_blank_values=True)`, first value of each name, decoding (plus as
    space, UTF-8 percent-escapes with replacement) only the parts that need it."""
    values: dict[str, str] = {}
    # Only the first 100 fields count (a longer query is not an error, just ignored beyond).
    for pair in text.split("&", 100)[:100]:
        if not pair:
            continue
        key, _, value = pair.partition("=")
        if "%" in key or "+" in key:
            key = _decoded(key)
        if key not in values:
            values[key] = _decoded(value) if "%" in value or "+" in value else value
    return values


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""

    @classmethod
    def json(cls, value: object, status: int = 200, cookies: Sequence[str] | None = None) -> Response:
        body = _COMPACT_JSON.encode(value).encode()
        return cls(status, _no_store("application/json", cookies), body)

    @classmethod
    def html(cls, body: bytes, status: int = 200, cookies: Sequence[str] | None = None) -> Response:
        headers = _no_store("text/html; charset=utf-8", cookies)
        # Our pages hold a sign-out button: no framing (clickjacking), no scripts.
        headers += [("x-frame-options", "DENY"), ("content-security-policy",
                     "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:; "
                     "frame-ancestors 'none'")]
        return cls(status, headers, body)

    @classmethod
    def redirect(cls, location: str, cookies: Sequence[str] | None = None) -> Response:
        headers = _no_store("text/plain; charset=utf-8", cookies)
        headers.append(("location", location))
        return cls(302, headers)


def _no_store(content_type: str, cookies: Sequence[str] | None) -> list[tuple[str, str]]:
    headers = [("content-type", content_type), ("cache-control", "no-store")]
    headers += [("set-cookie", cookie) for cookie in cookies or ()]
    return headers
