"""Fake users and the claims Logto releases for each scope."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "openid": ("sub",),
    "profile": ("name", "username", "picture", "created_at", "updated_at"),
    "email": ("email", "email_verified"),
    "phone": ("phone_number", "phone_number_verified"),
    "roles": ("roles",),
    "custom_data": ("custom_data",),
    "identities": ("identities", "sso_identities"),
    "urn:logto:scope:organizations": ("organizations",),
    "urn:logto:scope:organization_roles": ("organization_roles",),
}
SUPPORTED_SCOPES: tuple[str, ...] = ("openid", "offline_access", *list(SCOPE_CLAIMS)[1:])
USERINFO_ONLY = frozenset({"custom_data", "identities", "sso_identities"})
PROTOCOL_CLAIMS = ("iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid")
_SCOPED = frozenset(c for claims in SCOPE_CLAIMS.values() for c in claims)
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def valid_user_name(name: str) -> bool:
    """Whether ``name`` can sign in (letters, digits, ``._-``; at most 64 characters)."""
    return _USER_NAME.fullmatch(name) is not None


def subject_for(user: str) -> str:
    """The stable ``sub`` of a fake user: 12 hex characters derived from the name."""
    return hashlib.sha256(user.encode()).hexdigest()[:12]


def profile(user: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """All claims of ``user``; ``overrides`` add or replace claims, None removes one."""
    claims: dict[str, Any] = {
        "sub": subject_for(user),
        "name": user.capitalize(),
        "username": user,
        "picture": f"https://example.com/avatar/{user}.png",
        "email": f"{user}@example.com",
        "email_verified": True,
    }
    return merge(claims, overrides or {})


def merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``overrides``, where a None value deletes the key."""
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def release(claims: Mapping[str, Any], scopes: Iterable[str], *, id_token: bool) -> dict[str, Any]:
    """The claims ``scopes`` release; claims outside any scope are always released."""
    allowed = {c for s in scopes for c in SCOPE_CLAIMS.get(s, ())} | {"sub"}
    if id_token:
        allowed -= USERINFO_ONLY
    return {k: v for k, v in claims.items() if k in allowed or k not in _SCOPED}
