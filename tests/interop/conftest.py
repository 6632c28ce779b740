"""Fixtures for interop tests against a real oidc-provider (the engine under Logto).

Knobs (environment):
  INTEROP_RP_PORT                   loopback port the relying party under test will use
                                    (default: a free port picked once per session)
  INTEROP_REDIRECT_URIS             comma separated; ``{rp_port}`` is substituted
                                    (default: http://127.0.0.1:{rp_port}/api/auth/callback,
                                    http://127.0.0.1:{rp_port}/callback)
  INTEROP_POST_LOGOUT_REDIRECT_URIS comma separated; ``{rp_port}`` is substituted
                                    (default: http://127.0.0.1:{rp_port}/)
  INTEROP_ACCESS_TOKEN_TTL          seconds (default 60)
  INTEROP_BACKCHANNEL_LOGOUT_URI    optional; ``{rp_port}`` is substituted
  LOGTO_REQUIRE_ALL=1               fail instead of skip when node/npm are unavailable
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .provider import (
    OidcProviderProcess,
    ProviderUnavailable,
    free_loopback_port,
)

DEFAULT_REDIRECT_URIS = "http://127.0.0.1:{rp_port}/api/auth/callback,http://127.0.0.1:{rp_port}/callback"
DEFAULT_POST_LOGOUT_REDIRECT_URIS = "http://127.0.0.1:{rp_port}/"


def _require_all() -> bool:
    return os.environ.get("LOGTO_REQUIRE_ALL", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> None:
    if _require_all():
        pytest.fail(f"interop provider unavailable (LOGTO_REQUIRE_ALL=1): {reason}", pytrace=False)
    pytest.skip(f"interop provider unavailable: {reason}")


def _uris(value: str, rp_port: int) -> list[str]:
    return [item.strip().format(rp_port=rp_port) for item in value.split(",") if item.strip()]


@pytest.fixture(scope="session")
def interop_rp_port() -> int:
    """Loopback port reserved for the relying party under test (registered in redirect URIs)."""
    raw = os.environ.get("INTEROP_RP_PORT")
    return int(raw) if raw else free_loopback_port()


def _settings(rp_port: int) -> dict[str, Any]:
    backchannel = os.environ.get("INTEROP_BACKCHANNEL_LOGOUT_URI", "").strip()
    return {
        "redirect_uris": _uris(os.environ.get("INTEROP_REDIRECT_URIS", DEFAULT_REDIRECT_URIS), rp_port),
        "post_logout_redirect_uris": _uris(
            os.environ.get("INTEROP_POST_LOGOUT_REDIRECT_URIS", DEFAULT_POST_LOGOUT_REDIRECT_URIS),
            rp_port,
        ),
        "access_token_ttl": int(os.environ.get("INTEROP_ACCESS_TOKEN_TTL", "60")),
        "backchannel_logout_uri": backchannel.format(rp_port=rp_port) if backchannel else None,
    }


def _start(**kwargs: Any) -> OidcProviderProcess:
    process = OidcProviderProcess()
    try:
        return process.start(**kwargs)
    except ProviderUnavailable as exc:
        _unavailable(str(exc))
        raise  # unreachable: skip/fail raise


@pytest.fixture(scope="session")
def oidc_provider(interop_rp_port: int) -> Iterator[OidcProviderProcess]:
    """One provider for the whole session, configured from the INTEROP_* knobs."""
    process = _start(**_settings(interop_rp_port))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def oidc_provider_factory(
    interop_rp_port: int,
) -> Iterator[Callable[..., OidcProviderProcess]]:
    """Start extra providers with custom settings (e.g. a backchannel_logout_uri or
    a 1 s access-token TTL); keyword arguments override the INTEROP_* defaults.
    All are stopped at the end of the test."""
    started: list[OidcProviderProcess] = []

    def make(**overrides: Any) -> OidcProviderProcess:
        kwargs = _settings(interop_rp_port)
        kwargs.update(overrides)
        process = _start(**kwargs)
        started.append(process)
        return process

    try:
        yield make
    finally:
        for process in started:
            process.stop()
