"""Cookie parsing that tolerates other apps' cookies, Set-Cookie building, and chunking."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = ["CHUNK_SIZE", "CookieJar", "CookieJarView", "DuplicateCookie", "accepted_bindings", "delete_cookie",
           "find_cookie", "parse_cookie_header", "read_chunked", "set_cookie", "write_chunked"]

# Browsers cap one cookie (name, value and attributes) at 4096 bytes; keep room for the rest.
CHUNK_SIZE = 3936
_MAX_HEADER = 64 * 1024
_CHUNK_SUFFIX = re.compile(r"\.([0-9]{1,3})")  # used with fullmatch; ASCII digits only
_EXPIRED = "Thu, 01 Jan 1970 00:00:00 GMT"

CookieJarView = Mapping[str, str]


class DuplicateCookie(ValueError):
    """A cookie name the request carries more than once: one of them may have been planted
    from a sibling host (`Domain=` the parent) or another path, and the browser gives no way to
    tell which one is ours, so neither is trusted. Its arguments are the names concerned."""


class CookieJar(dict[str, str]):
    """A request's cookies (the first occurrence of each name) and `duplicates`, the names it
    carries more than once."""

    __slots__ = ("duplicates",)

    def __init__(self) -> None:
        super().__init__()
        self.duplicates: set[str] = set()

    def only(self, name: str) -> str | None:
        """The value of `name`, or None when absent; `DuplicateCookie` when sent twice."""
        if name in self.duplicates:
            raise DuplicateCookie(name)
        return self.get(name)


def parse_cookie_header(header: str) -> CookieJar:
    """Parse a Cookie header leniently: a malformed pair is skipped, never the whole header.

    The first occurrence of a name wins (browsers send the most specific path first); the names
    that come again are recorded in `duplicates`.
    """
    cookies = CookieJar()
    if len(header) > _MAX_HEADER:
        header = header[:_MAX_HEADER]
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        if not sep:
            continue
        name = name.strip()
        if not name:
            continue
        if name in cookies:
            cookies.duplicates.add(name)
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        cookies[name] = value
    return cookies


def _value_at(header: str, name: str, start: int) -> tuple[int, int] | None:
    """The bounds of the value of the first cookie `name` at or after `start` (the start of a
    pair), or None."""
    at = header.find(name, start)
    while at >= 0:
        before = at - 1
        while before >= start and header[before] in " \t":
            before -= 1
        equals = at + len(name)
        while equals < len(header) and header[equals] in " \t":
            equals += 1
        if (before < start or header[before] == ";") and equals < len(header) and header[equals] == "=":
            end = header.find(";", equals)
            return equals + 1, end if end >= 0 else len(header)
        at = header.find(name, at + len(name))
    return None


def find_cookie(header: str, name: str) -> str | None:
    """The value of cookie `name` as `parse_cookie_header` would give it, without parsing the
    others; None when absent, `DuplicateCookie` when the header carries it twice. A fast path
    for the session cookie: the check for a second one is one search of the rest."""
    if header.startswith(name) and header[len(name):len(name) + 1] == "=":
        # The usual header of a signed-in browser: ours alone, or first.
        end = header.find(";")
        if end < 0:  # alone: no second one
            value = header[len(name) + 1:].strip()
            return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
        start = len(name) + 1
    else:
        bounds = _value_at(header, name, 0)
        if bounds is None:
            return None
        start, end = bounds
    if header.find(name, end) >= 0 and _value_at(header, name, end + 1) is not None:
        raise DuplicateCookie(name)
    value = header[start:end].strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def accepted_bindings(name: str, current: bytes, earlier: bytes) -> tuple[bytes, ...]:
    """The associated data a session value read from cookie `name` may be sealed with: values
    are sealed with `current`; `earlier` is what the versions before the `__Host-` names sealed
    with. Under their `__Secure-` name (still read while sessions move to `__Host-`), which a
    sibling host can set, only `earlier`: no value sealed now can be planted there, and the
    earlier ones run out. Under `__Host-`, only `current`; under an unprefixed (http) name, both
    (http has no name a sibling host cannot set)."""
    if name.startswith("__Host-"):
        return (current,)
    if name.startswith("__Secure-"):
        return (earlier,)
    return current, earlier


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
    name that belongs to it (to clear the ones a new value no longer needs). `DuplicateCookie`
    (with those names) when one of them came twice in a parsed `CookieJar`."""
    present = _chunk_names(cookies, name)
    if not present:
        return None, []
    if isinstance(cookies, CookieJar) and not cookies.duplicates.isdisjoint(present):
        raise DuplicateCookie(*present)
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
