"""Cookie parsing that tolerates other apps' cookies, Set-Cookie building, and chunking."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = ["CHUNK_SIZE", "CookieJarView", "delete_cookie", "find_cookie", "parse_cookie_header", "read_chunked",
           "set_cookie", "write_chunked"]

# Browsers cap one cookie (name, value and attributes) at 4096 bytes; keep room for the rest.
CHUNK_SIZE = 3936
_MAX_HEADER = 64 * 1024
_CHUNK_SUFFIX = re.compile(r"\.([0-9]{1,3})")  # used with fullmatch; ASCII digits only
_EXPIRED = "Thu, 01 Jan 1970 00:00:00 GMT"

CookieJarView = Mapping[str, str]


def parse_cookie_header(header: str) -> dict[str, str]:
    """Parse a Cookie header leniently: a malformed pair is skipped, never the whole header.

    The first occurrence of a name wins (browsers send the most specific path first).
    """
    cookies: dict[str, str] = {}
    if len(header) > _MAX_HEADER:
        header = header[:_MAX_HEADER]
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        if not sep:
            continue
        name = name.strip()
        if not name or name in cookies:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        cookies[name] = value
    return cookies


def find_cookie(header: str, name: str) -> str | None:
    """The value of cookie `name` as `parse_cookie_header` would give it (first occurrence),
    without parsing the others; None when absent. A fast path for the session cookie."""
    if header.startswith(name) and header[len(name):len(name) + 1] == "=":
        # The usual header of a signed-in browser: ours alone, or first.
        end = header.find(";")
        value = header[len(name) + 1:end if end >= 0 else None].strip()
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    at = header.find(name)
    while at >= 0:
        before = at - 1
        while before >= 0 and header[before] in " \t":
            before -= 1
        equals = at + len(name)
        while equals < len(header) and header[equals] in " \t":
            equals += 1
        if (before < 0 or header[before] == ";") and equals < len(header) and header[equals] == "=":
            end = header.find(";", equals)
            value = header[equals + 1:end if end >= 0 else len(header)].strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value
        at = header.find(name, at + len(name))
    return None


def set_cookie(name: str, value: str, *, max_age: int | None, secure: bool,
               http_only: bool = True) -> str:
    parts = [f"{name}={value}", "Path=/"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if http_only:
        parts.append("HttpOnly")
    parts.append("SameSite=Lax")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def delete_cookie(name: str, *, secure: bool) -> str:
    return set_cookie(name, "", max_age=0, secure=secure) + f"; Expires={_EXPIRED}"


def _chunk_names(cookies: Mapping[str, str], name: str) -> list[str]:
    prefix = name + "."
    found = [key for key in cookies if key == name or
             (key.startswith(prefix) and _CHUNK_SUFFIX.fullmatch(key, len(name)))]
    return found


def read_chunked(cookies: Mapping[str, str], name: str) -> tuple[str | None, list[str]]:
    """The value of cookie `name`, joined from `name.0`, `name.1`, ... when chunked, and every
    name that belongs to it (to clear the ones a new value no longer needs)."""
    present = _chunk_names(cookies, name)
    if not present:
        return None, []
    if name in cookies:
        return cookies[name], present
    parts: list[str] = []
    index = 0
    while f"{name}.{index}" in cookies:
        parts.append(cookies[f"{name}.{index}"])
        index += 1
    return ("".join(parts) or None), present


def write_chunked(name: str, value: str, *, max_age: int, secure: bool,
                  present: Iterable[str] = ()) -> list[str]:
    """Set-Cookie headers for `value`, split into numbered chunks when it is too big for one
    cookie, plus deletions of the chunks of an earlier, bigger value."""
    if len(value) <= CHUNK_SIZE:
        pairs = [(name, value)]
    else:
        pairs = [(f"{name}.{i}", value[start:start + CHUNK_SIZE])
                 for i, start in enumerate(range(0, len(value), CHUNK_SIZE))]
    written = {pair_name for pair_name, _ in pairs}
    headers = [set_cookie(n, v, max_age=max_age, secure=secure) for n, v in pairs]
    headers += [delete_cookie(old, secure=secure) for old in present if old not in written]
    return headers
