"""`python -m logto_middleware doctor`: the configuration checked against the provider.

Each check is one line, ✓ or ✗ with the fix. It runs the package's own flows with a
`SyncDriver`, so it sees the provider exactly as the middleware does. The secrets are never
printed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TextIO

import httpx

from ._protocol.oauth import token_grant
from ._protocol.provider import ProviderCache, ProviderMetadata
from .config import LogtoConfig
from .errors import LogtoError, OAuthError
from .flow import SyncDriver

__all__ = ["run_doctor"]

OK, FAIL = "✓", "✗"


def run_doctor(config: LogtoConfig, out: TextIO, *, transport: httpx.BaseTransport | None = None) -> int:
    """Check `config` against its provider, one line per check on `out`; 0 when all pass, else 1."""
    failures = 0

    def say(ok: bool, text: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"{OK if ok else FAIL} {text}", file=out)

    with httpx.Client(timeout=config.http_timeout, transport=transport) as client:
        run = SyncDriver(client, deadline=config.call_deadline).run
        try:
            metadata = run(ProviderCache(config.issuer).metadata())
        except LogtoError as exc:
            say(False, f"discovery at {config.discovery_url}: {exc}")
        else:
            say(True, f"discovery at {config.discovery_url} answers for issuer {config.issuer}")
            _check_algorithms(say, config, metadata)
            _check_credentials(say, config, metadata, run)
    _print_redirect_uris(config, out)
    return 1 if failures else 0


def _check_algorithms(say: Callable[[bool, str], None], config: LogtoConfig, metadata: ProviderMetadata) -> None:
    offered, configured = metadata.id_token_signing_alg_values_supported, tuple(config.id_token_algorithms)
    if not offered:
        say(True, f"ID token algorithms: the provider names none; configured {', '.join(configured)}")
    elif set(offered) & set(configured):
        say(True, f"ID token algorithms: the provider offers {', '.join(offered)}; "
                  f"configured {', '.join(configured)}")
    else:
        say(False, f"ID token algorithms: the provider offers {', '.join(offered)}, configured "
                   f"{', '.join(configured)}: set id_token_algorithms={offered!r} (Logto signs with ES384)")


def _check_credentials(say: Callable[[bool, str], None], config: LogtoConfig, metadata: ProviderMetadata,
                       run: Callable[..., object]) -> None:
    # A made-up authorization code: the provider authenticates the client first, so it answers
    # invalid_client for a wrong id or secret and invalid_grant (unknown code) for right ones.
    form = {"grant_type": "authorization_code", "code": "doctor-" + secrets.token_urlsafe(16),
            "redirect_uri": _callback_uri(config) or "http://localhost/doctor",
            "code_verifier": secrets.token_urlsafe(48)}
    try:
        run(token_grant(metadata.token_endpoint, config.client_id, config.client_secret, form))
    except OAuthError as exc:
        if exc.error == "invalid_grant":
            say(True, f"client credentials: the token endpoint accepts AUTH_LOGTO_ID {config.client_id!r} "
                      "and its AUTH_LOGTO_SECRET")
        elif exc.error == "invalid_client":
            say(False, "client credentials: the token endpoint refused them (invalid_client): set AUTH_LOGTO_ID "
                       "and AUTH_LOGTO_SECRET to the App ID and App secret of a Traditional web application "
                       "in Logto's console")
        else:
            say(False, f"client credentials: the token endpoint answered {exc.error!r} to a made-up code "
                       "(expected invalid_grant): is the application a Traditional web application?")
        return
    except LogtoError as exc:
        say(False, f"client credentials: the token endpoint could not be asked: {exc}")
        return
    say(False, "client credentials: the token endpoint accepted a made-up authorization code")


def _callback_uri(config: LogtoConfig) -> str | None:
    if not config.base_url:
        return None
    return f"{config.base_url.rstrip('/')}{config.base_path}/callback/logto"


def _print_redirect_uris(config: LogtoConfig, out: TextIO) -> None:
    callback = _callback_uri(config)
    if callback is None or config.base_url is None:
        print("  (set AUTH_URL to the app's public URL to see the redirect URIs to register in Logto)", file=out)
        return
    after = config.post_logout_redirect or "/"
    if after.startswith("/") and not after.startswith("//"):
        after = config.base_url.rstrip("/") + after
    print(f"  register in Logto's console: Redirect URI {callback}", file=out)
    print(f"  register in Logto's console: Post sign-out redirect URI {after}", file=out)
