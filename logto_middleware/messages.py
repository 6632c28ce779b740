"""A plain description of a request and of a response, whatever the server interface."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import parse_qsl

from .cookies import parse_cookie_header

__all__ = ["Request", "Response"]

_MAX_QUERY = 8192


@dataclass(frozen=True)
class Request:
    """What the core needs to know of a request, whatever the server interface."""

    method: str
    path: str
    query_string: str
    headers: Mapping[str, str]
    scheme: str
    server: str | None = None
    body: bytes = b""

    @cached_property
    def cookies(self) -> dict[str, str]:
        return parse_cookie_header(self.headers.get("cookie", ""))

    @cached_property
    def query(self) -> dict[str, str]:
        """The query string's parameters, first value of each; malformed pairs are dropped."""
        return _first_values(self.query_string[:_MAX_QUERY])

    @cached_property
    def form(self) -> dict[str, str]:
        if "application/x-www-form-urlencoded" not in self.headers.get("content-type", ""):
            return {}
        try:
            return _first_values(self.body.decode("utf-8"))
        except UnicodeDecodeError:
            return {}

    def wants_json(self) -> bool:
        return "application/json" in self.headers.get("accept", "")


def _first_values(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    # Only the first 100 fields count (a longer query is not an error, just ignored beyond).
    for key, value in parse_qsl("&".join(text.split("&", 100)[:100]), keep_blank_values=True):
        values.setdefault(key, value)
    return values


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""

    @classmethod
    def json(cls, value: object, status: int = 200, cookies: list[str] | None = None) -> Response:
        body = json.dumps(value, separators=(",", ":")).encode()
        return cls(status, _no_store("application/json", cookies), body)

    @classmethod
    def html(cls, body: bytes, status: int = 200, cookies: list[str] | None = None) -> Response:
        headers = _no_store("text/html; charset=utf-8", cookies)
        # Our pages hold a sign-out button: no framing (clickjacking), no scripts.
        headers += [("x-frame-options", "DENY"), ("content-security-policy",
                     "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:; "
                     "frame-ancestors 'none'")]
        return cls(status, headers, body)

    @classmethod
    def redirect(cls, location: str, cookies: list[str] | None = None) -> Response:
        headers = _no_store("text/plain; charset=utf-8", cookies)
        headers.append(("location", location))
        return cls(302, headers)


def _no_store(content_type: str, cookies: list[str] | None) -> list[tuple[str, str]]:
    headers = [("content-type", content_type), ("cache-control", "no-store")]
    headers += [("set-cookie", cookie) for cookie in cookies or ()]
    return headers
