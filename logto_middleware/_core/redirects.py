"""The app's origin, and redirect targets that can never leave it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

__all__ = ["request_origin", "safe_redirect"]

_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"
# Matched whole (`fullmatch`: a `$` would let a final newline through); ASCII digits only (`\d`
# is any Unicode digit).
_HOST = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")


def request_origin(scheme: str, headers: Mapping[str, str], *, base_url: str | None,
                   trust_host: bool, server: str | None = None) -> str:
    """`base_url` when set; otherwise the request's own origin. `X-Forwarded-*` only counts
    with `trust_host`, so a forged header cannot steer the redirect_uri to another host."""
    if base_url:
        return base_url
    host = headers.get("host", "") or (server or "localhost")
    if trust_host:
        forwarded_host = headers.get("x-forwarded-host", "").split(",")[0].strip()
        forwarded_proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        host = forwarded_host or host
        if forwarded_proto in ("http", "https"):
            scheme = forwarded_proto
    if not _HOST.fullmatch(host):
        host = server or "localhost"
    scheme = "https" if scheme in ("https", "wss") else "http"
    return f"{scheme}://{host.lower()}"


def safe_redirect(target: str | None, origin: str, default: str) -> str:
    """An absolute URL on `origin` for `target` (a path or a same-origin URL), else `default`.

    Everything a browser might read as another origin (`//evil`, `/\\evil`, `https:evil`,
    `javascript:`, control characters) falls back to `default`.
    """
    if not target or len(target) > 2048:
        return default
    if any(ord(c) < 0x21 or c in "\\\x7f" for c in target):
        return default
    target = quote(target, safe=_URL_SAFE)  # non-ASCII stays on the origin, percent-encoded
    if target.startswith("/") and not target.startswith("//"):
        return origin + target
    parts = urlsplit(target)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return default
    if f"{parts.scheme}://{parts.netloc}".lower() != origin or "@" in parts.netloc:
        return default
    path = parts.path or "/"
    return origin + path + (f"?{parts.query}" if parts.query else "") + (
        f"#{parts.fragment}" if parts.fragment else "")
