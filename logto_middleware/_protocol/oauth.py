"""Requests to the token and revocation endpoints, and their responses (RFC 6749, RFC 7009)."""

from __future__ import annotations

import base64
import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

from ..errors import OAuthError, ProviderError, ProviderUnavailable
from ..flow import Fetch, Flow
from .provider import read_json

# httpx is imported where a request is built, on the first grant (see flow.py).
if TYPE_CHECKING:
    import httpx

__all__ = ["MAX_TOKEN_RESPONSE", "TokenResponse", "basic_auth", "revoke", "revoke_or_raise", "token_grant"]

log = logging.getLogger("logto_middleware")

# A token response (and a userinfo answer) is a few kilobytes even with large custom claims;
# the driver stops reading past this.
MAX_TOKEN_RESPONSE = 128 * 1024
# The revocation endpoint's body is not read for anything.
_MAX_REVOCATION_RESPONSE = 16 * 1024


@lru_cache(maxsize=16)
def basic_auth(client_id: str, client_secret: str) -> str:
    """client_secret_basic: id and secret are form-encoded before base64 (RFC 6749 §2.3.1),
    which matters for Logto secrets that contain `#` or `:`."""
    raw = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    expires_in: int | None
    refresh_token: str | None
    id_token: str | None
    scope: str | None

    @classmethod
    def parse(cls, body: Any) -> TokenResponse:
        if not isinstance(body, dict):
            raise ProviderError("token endpoint answered a non-object")
        token_type = body.get("token_type")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise ProviderError("token endpoint answered a token_type other than Bearer")
        access_token = body.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise ProviderError("token endpoint answered no access_token")
        expires_in = body.get("expires_in")
        if isinstance(expires_in, str) and expires_in.isdigit():
            expires_in = int(expires_in)
        if expires_in is not None and (not isinstance(expires_in, int) or isinstance(expires_in, bool)
                                       or expires_in < 0):
            raise ProviderError("token endpoint answered an invalid expires_in")
        fields = {name: body.get(name) for name in ("refresh_token", "id_token", "scope")}
        for name, value in fields.items():
            if value is not None and not isinstance(value, str):
                raise ProviderError(f"token endpoint answered an invalid {name}")
        return cls(access_token=access_token, expires_in=expires_in, refresh_token=fields["refresh_token"],
                   id_token=fields["id_token"], scope=fields["scope"])


def _error_from(response: httpx.Response, body: Any) -> Exception:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        description = body.get("error_description")
        return OAuthError(body["error"][:100], description if isinstance(description, str) else None)
    return ProviderError(f"token endpoint answered {response.status_code}")


# What `urlencode` leaves as it is; most grant values (codes, verifiers, tokens) are only that.
_FORM_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch
# The values that do need quoting are the configuration's (redirect URI, scopes, resources):
# quoted once each.
_form_quoted = lru_cache(maxsize=64)(quote_plus)


def form_body(form: Mapping[str, str] | Sequence[tuple[str, str]]) -> bytes:
    """`urlencode(form)` as bytes (HTML form encoding, RFC 6749 appendix B), quoting only the
    values that need it."""
    pairs = form.items() if isinstance(form, Mapping) else form
    plain, quoted = _FORM_PLAIN, _form_quoted
    return "&".join([f"{key if plain(key) else quoted(key)}={value if plain(value) else quoted(value)}"
                     for key, value in pairs]).encode("ascii")


@lru_cache(maxsize=16)
def _parsed_url(url: str) -> httpx.URL:
    # Parsing the token endpoint's URL costs httpx more than building the rest of the request.
    import httpx

    return httpx.URL(url)


@lru_cache(maxsize=16)
def _grant_headers(client_id: str, client_secret: str) -> httpx.Headers:
    # httpx copies a `Headers` object into each request as it is (a dict is normalized anew).
    import httpx

    return httpx.Headers({"Authorization": basic_auth(client_id, client_secret), "Accept": "application/json",
                          "Content-Type": "application/x-www-form-urlencoded"})


class _ClientRefusedLog:
    """The WARNING for `invalid_client` (a wrong App ID or App secret): every sign-in and refresh
    fails until the configuration is fixed, so it is said at most once per `interval` for each
    (token endpoint, client id), the key of the `_last` cache (bounded: a few apps per process)."""

    def __init__(self, interval: float = 60.0, bound: int = 16) -> None:
        self.interval = interval
        self._bound = bound
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def warn(self, endpoint: str, client_id: str) -> None:
        key, now = (endpoint, client_id), time.monotonic()
        with self._lock:
            if now - self._last.get(key, float("-inf")) < self.interval:
                return
            if key not in self._last and len(self._last) >= self._bound:
                self._last.pop(next(iter(self._last)))
            self._last[key] = now
        # The id is not a secret; the secret's value is never logged.
        log.warning("the token endpoint refused the client's credentials (invalid_client): check "
                    "AUTH_LOGTO_ID (now %r) and AUTH_LOGTO_SECRET against the App ID and App secret of the "
                    "application in Logto's console", client_id[:64])


_client_refused = _ClientRefusedLog()


def token_grant(endpoint: str, client_id: str, client_secret: str,
                form: dict[str, str] | list[tuple[str, str]]) -> Flow[TokenResponse]:
    """POST a grant to the token endpoint with client_secret_basic."""
    import httpx

    # Encoded here rather than with httpx's `data=`: the same bytes, built more cheaply.
    response = yield Fetch(httpx.Request("POST", _parsed_url(endpoint), content=form_body(form),
                                         headers=_grant_headers(client_id, client_secret)), MAX_TOKEN_RESPONSE)
    body = read_json(response, "token endpoint")
    if response.status_code != 200:
        error = _error_from(response, body)
        if isinstance(error, OAuthError) and error.error == "invalid_client":
            _client_refused.warn(endpoint, client_id)
        raise error
    return TokenResponse.parse(body)


def revoke_or_raise(endpoint: str, client_id: str, client_secret: str, token: str, hint: str) -> Flow[None]:
    """Revoke a token (RFC 7009); `ProviderUnavailable` when the provider cannot be reached,
    `ProviderError` when it refused (the messages never carry the token)."""
    import httpx

    response = yield Fetch(httpx.Request(
        "POST", endpoint, data={"token": token, "token_type_hint": hint},
        headers={"Authorization": basic_auth(client_id, client_secret)}), _MAX_REVOCATION_RESPONSE)
    if response.status_code != 200:
        raise ProviderError(f"revocation endpoint answered {response.status_code}")


def revoke(endpoint: str, client_id: str, client_secret: str, token: str, hint: str) -> Flow[bool]:
    """Revoke a token (RFC 7009); best effort: True when the provider accepted it."""
    try:
        yield from revoke_or_raise(endpoint, client_id, client_secret, token, hint)
    except (ProviderUnavailable, ProviderError):
        return False
    return True
