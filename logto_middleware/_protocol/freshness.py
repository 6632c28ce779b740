"""Fresh authentication: the one rule deciding whether a sign-in is recent enough.

The authorization request asks for it with `max_age` (OpenID Connect Core 3.1.2.1); the ID token
answers with `auth_time`, which the client then checks (3.1.3.7, item 13). The session keeps that
`auth_time`, so a guard asks the same rule on each request without a round trip. Both use the
configured clock skew as leeway: were the guard stricter than the callback, a sign-in the
callback accepted could be sent back to sign in again, for ever.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from ..errors import TokenValidationError

__all__ = ["MAX_AGE_LIMIT", "AuthTimeError", "auth_time_of", "check_auth_time", "is_recent", "keep_auth_time",
           "parse_max_age", "require_max_age"]

# A sign-in older than a year is not "fresh" in any sense; a larger value is a mistake (or an
# attempt at a huge number), refused rather than sent on to the provider.
MAX_AGE_LIMIT = 366 * 24 * 3600
_DIGITS = re.compile(r"[0-9]{1,9}")


class AuthTimeError(TokenValidationError):
    """The ID token does not show a sign-in as recent as the authorization request asked."""


def parse_max_age(text: str) -> int | None:
    """The `max_age` of a sign-in request (whole seconds, 0 to `MAX_AGE_LIMIT`, ASCII digits
    only); None when it is anything else."""
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if value <= MAX_AGE_LIMIT else None


def require_max_age(value: int) -> int:
    """`value` if it is a valid `max_age` for a guard; ValueError otherwise (at start-up, where
    the guard is declared, not on a request)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AGE_LIMIT:
        raise ValueError(f"max_age must be whole seconds from 0 to {MAX_AGE_LIMIT}, not {value!r}")
    return value


def auth_time_of(claims: Mapping[str, Any]) -> int | None:
    """The `auth_time` claim (seconds since the epoch), or None when absent or not a finite number."""
    value = claims.get("auth_time")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return int(value)


def is_recent(auth_time: int | None, max_age: int, *, now: float, leeway: int) -> bool:
    """Whether a sign-in at `auth_time` is at most `max_age` seconds old at `now`, within
    `leeway` either way; an unknown time, or one in the future, is not recent."""
    return auth_time is not None and auth_time - leeway <= now and now - auth_time <= max_age + leeway


def check_auth_time(claims: Mapping[str, Any], max_age: int, *, now: float, leeway: int) -> None:
    """OpenID Connect Core 3.1.3.7, item 13: with `max_age` requested, the ID token must carry
    `auth_time`, and it must be recent enough. Raises `AuthTimeError`."""
    auth_time = auth_time_of(claims)
    if auth_time is None:
        raise AuthTimeError("ID token has no auth_time, but max_age was requested")
    if not is_recent(auth_time, max_age, now=now, leeway=leeway):
        raise AuthTimeError(f"ID token auth_time is {int(now) - auth_time} s old, more than max_age {max_age} s "
                            f"(leeway {leeway} s)")


def keep_auth_time(claims: dict[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
    """`claims` with the `auth_time` of `previous` (none if it had none)."""
    kept = {k: v for k, v in claims.items() if k != "auth_time"}
    if "auth_time" in previous:
        kept["auth_time"] = previous["auth_time"]
    return kept
