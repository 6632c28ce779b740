"""ID-token verification with joserfc: allowed algorithms only, keys from the cached JWKS."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Collection, Mapping
from typing import Any, TypeGuard

from .._sessions.cipher import b64decode, b64encode
from ..errors import TokenValidationError
from ..flow import Flow
from .freshness import check_auth_time
from .provider import ProviderCache

__all__ = ["at_hash", "decode_unverified", "logout_token_replay_ttl", "verify_id_token", "verify_logout_token"]

BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"

MAX_TOKEN_LENGTH = 16 * 1024
# oidc-provider (Logto's engine) gives a logout token 120 s (exp = iat + 120) and posts it at
# once, without retries; the spec (section 4) asks for at most two minutes. Five minutes of age
# leave room for a slow delivery; a captured token is useless after that. The lifetime bound
# refuses an `exp` far in the future (a sign of a broken issuer) outright.
LOGOUT_TOKEN_MAX_AGE = 300
LOGOUT_TOKEN_MAX_LIFETIME = 600
_HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}


def _segments(token: str) -> list[str]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise TokenValidationError("token is missing or oversized")
    parts = token.split(".")
    if len(parts) == 5:
        raise TokenValidationError("token is encrypted (JWE) where a signed JWT was expected")
    if len(parts) != 3 or not all(parts):
        raise TokenValidationError("token is not a compact JWS")
    return parts


def _json_segment(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(b64decode(segment).decode("utf-8"))  # JOSE JSON is UTF-8 (RFC 7515)
    except ValueError as exc:
        raise TokenValidationError("token segment is not base64url JSON") from exc
    if not isinstance(value, dict):
        raise TokenValidationError("token segment is not a JSON object")
    return value


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a JWT, *without* checking anything: for display only."""
    parts = _segments(token)
    return _json_segment(parts[0]), _json_segment(parts[1])


def at_hash(access_token: str, alg: str) -> str:
    """OpenID Connect `at_hash`: the left half of the access token's hash, base64url."""
    digest = _HASHES.get(alg[-3:], hashlib.sha256)(access_token.encode()).digest()
    return b64encode(digest[: len(digest) // 2])


def verify_signed_jwt(token: str, provider: ProviderCache, algorithms: Collection[str],
                      types: Collection[str] | None = None, *, trusted_source: bool = False) -> Flow[dict[str, Any]]:
    """Check a JWT's signature with the provider's keys (and its `typ` header when `types` is
    given); returns its claims unvalidated.

    `trusted_source`: the token came from the token endpoint over TLS (not from whoever sent
    the request), so an unknown `kid` refetches the JWKS at once; otherwise the refetch is
    rate-limited (see `ProviderCache.refetch_keys`).
    """
    return (yield from _verified_alg_and_claims(token, provider, algorithms, types, trusted_source))[1]


def _verified_alg_and_claims(token: str, provider: ProviderCache, algorithms: Collection[str],
                             types: Collection[str] | None,
                             trusted_source: bool) -> Flow[tuple[str, dict[str, Any]]]:
    parts = _segments(token)
    header = _json_segment(parts[0])
    if types is not None and str(header.get("typ", "")).lower() not in types:
        raise TokenValidationError("token type is not accepted here")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise TokenValidationError("token algorithm is not allowed")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise TokenValidationError("token kid is not a string")
    keys = provider.cached_keys()
    fetched_now = keys is None
    if keys is None:
        keys = yield from provider.keys()
    key = keys.pick(kid, alg)
    if key is None and not fetched_now:  # keys fetched for this very token are as new as they get
        newer = yield from provider.refetch_keys(keys, trusted=trusted_source)
        key = newer.pick(kid, alg) if newer is not None else None
    if key is None:
        raise TokenValidationError("no provider key matches the token")
    # joserfc alone decides whether this is a valid JWS (signature, `crit`, ...); the policy
    # (which algorithm, which key) is ours and was settled above. Imported here, on the first
    # token verified, not at import: requests served from a session cookie never need it.
    from joserfc import jws
    from joserfc.errors import BadSignatureError, JoseError

    try:
        jws.deserialize_compact(token, key, algorithms=[alg])
    except BadSignatureError as exc:
        raise TokenValidationError("token signature is invalid") from exc
    except (JoseError, ValueError, TypeError) as exc:
        raise TokenValidationError("token signature could not be checked") from exc
    return alg, _json_segment(parts[1])


def verify_id_token(token: str, *, provider: ProviderCache, issuer: str, client_id: str,
                    algorithms: Collection[str], now: float, leeway: int,
                    nonce: str | None = None, access_token: str | None = None,
                    subject: str | None = None, trusted_source: bool = False,
                    max_age: int | None = None) -> Flow[dict[str, Any]]:
    """Verify an ID token (OpenID Connect Core 3.1.3.7) and return its claims.

    `nonce` is checked when given (the authorization-code response); `subject` when refreshing;
    `max_age` (the authorization request's) requires a recent enough `auth_time` (item 13,
    raising `freshness.AuthTimeError`).
    Pass `trusted_source=True` for an ID token just received from the token endpoint (see
    `verify_signed_jwt`).
    """
    alg, claims = yield from _verified_alg_and_claims(token, provider, algorithms, None, trusted_source)
    check_standard_claims(claims, issuer=issuer, audience=client_id, now=now, leeway=leeway)
    azp = claims.get("azp")
    if azp is not None and azp != client_id:
        raise TokenValidationError("token azp is another client")
    if isinstance(claims.get("aud"), list) and len(claims["aud"]) > 1 and azp != client_id:
        raise TokenValidationError("token has several audiences and no matching azp")
    if nonce is not None:
        found = claims.get("nonce")
        # Bytes: compare_digest refuses str with non-ASCII characters (a hostile provider's).
        if not isinstance(found, str) or not hmac.compare_digest(found.encode(), nonce.encode()):
            raise TokenValidationError("token nonce does not match the sign-in request")
    if subject is not None and claims.get("sub") != subject:
        raise TokenValidationError("token subject changed")
    if access_token is not None and "at_hash" in claims and not hmac.compare_digest(
            str(claims["at_hash"]).encode(), at_hash(access_token, alg).encode()):
        raise TokenValidationError("token at_hash does not match the access token")
    if max_age is not None:
        check_auth_time(claims, max_age, now=now, leeway=leeway)
    return claims


def verify_logout_token(token: str, *, provider: ProviderCache, issuer: str, client_id: str,
                        algorithms: Collection[str], now: float, leeway: int) -> Flow[dict[str, Any]]:
    """Verify a back-channel logout token (OpenID Connect Back-Channel Logout 1.0, 2.6).

    Besides the spec's checks, the token must be fresh: it carries `exp`, was issued at most
    `LOGOUT_TOKEN_MAX_AGE` seconds ago and lives at most `LOGOUT_TOKEN_MAX_LIFETIME` seconds,
    so its `jti` needs remembering only for a bounded time (`logout_token_replay_ttl`).
    """
    # Posted by whoever reaches the endpoint: an unknown kid refetches only at a limited rate.
    claims = yield from verify_signed_jwt(token, provider, algorithms, trusted_source=False)
    if not isinstance(claims.get("sub"), str) and not isinstance(claims.get("sid"), str):
        raise TokenValidationError("logout token has neither sub nor sid")
    if not _is_number(claims.get("exp")):
        # Without exp a captured token would stay valid for ever, longer than any jti memory.
        raise TokenValidationError("logout token has no exp")
    check_standard_claims({"sub": claims.get("sub") or claims.get("sid"), **claims},
                          issuer=issuer, audience=client_id, now=now, leeway=leeway)
    if claims["iat"] + LOGOUT_TOKEN_MAX_AGE + leeway < now:
        raise TokenValidationError("logout token was issued too long ago")
    if claims["exp"] - claims["iat"] > LOGOUT_TOKEN_MAX_LIFETIME:
        raise TokenValidationError("logout token exp is too far after its iat")
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_LOGOUT_EVENT), dict):
        raise TokenValidationError("logout token lacks the back-channel logout event")
    if "nonce" in claims:
        raise TokenValidationError("logout token must not carry a nonce")
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise TokenValidationError("logout token has no jti")
    return claims


def logout_token_replay_ttl(claims: Mapping[str, Any], *, now: float, leeway: int) -> float:
    """Seconds to remember a verified logout token's `jti`: until `verify_logout_token` would
    refuse the token anyway (past `exp`, or too long after `iat`, plus leeway); at least 1."""
    last_accepted = min(claims["exp"], claims["iat"] + LOGOUT_TOKEN_MAX_AGE) + leeway
    return max(1.0, float(last_accepted) + 1 - now)  # one second past the last instant it passes


def check_standard_claims(claims: Mapping[str, Any], *, issuer: str, audience: str, now: float,
                          leeway: int) -> None:
    """`iss`, `aud`, `sub`, `exp`, `iat` and `nbf` of a JWT."""
    if claims.get("iss") != issuer:
        raise TokenValidationError("token issuer does not match")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if audience not in audiences:
        raise TokenValidationError("token audience does not include this client")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise TokenValidationError("token has no subject")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not _is_number(exp) or exp + leeway < now:
        raise TokenValidationError("token is expired")
    if not _is_number(iat) or iat - leeway > now:
        raise TokenValidationError("token was issued in the future")
    nbf = claims.get("nbf")
    if nbf is not None and (not _is_number(nbf) or nbf - leeway > now):
        raise TokenValidationError("token is not valid yet")


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
