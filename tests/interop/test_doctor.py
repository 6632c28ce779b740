"""`python -m logto_middleware doctor` against the real oidc-provider configured like Logto."""

from __future__ import annotations

import io
from typing import Any

from logto_middleware import LogtoConfig
from logto_middleware._doctor import run_doctor

from .provider import OidcProviderProcess

SECRET = "interop-doctor-secret-0123456789-abcdef"


def _doctor(provider: OidcProviderProcess, **changes: Any) -> tuple[int, list[str]]:
    settings: dict[str, Any] = {"issuer": provider.issuer, "client_id": provider.client_id,
                                "client_secret": provider.client_secret, "secret": SECRET,
                                "base_url": "http://127.0.0.1:3000"}
    settings.update(changes)
    config = LogtoConfig(**settings)
    out = io.StringIO()
    status = run_doctor(config, out)
    assert config.client_secret not in out.getvalue()
    return status, out.getvalue().splitlines()


def test_right_configuration_passes_every_check(oidc_provider: OidcProviderProcess) -> None:
    status, lines = _doctor(oidc_provider)
    assert status == 0, lines
    assert [line[0] for line in lines if line[:1] in "✓✗"] == ["✓", "✓", "✓"]


def test_wrong_secret_fails_the_credentials_check(oidc_provider: OidcProviderProcess) -> None:
    status, lines = _doctor(oidc_provider, client_secret="not-the-client-secret")
    assert status == 1
    assert [line[0] for line in lines if line[:1] in "✓✗"] == ["✓", "✓", "✗"]
    assert "invalid_client" in lines[2] and "AUTH_LOGTO_SECRET" in lines[2]


def test_issuer_without_oidc_gets_the_hint(oidc_provider: OidcProviderProcess) -> None:
    assert oidc_provider.issuer.endswith("/oidc")
    root = oidc_provider.issuer.removesuffix("/oidc")
    status, lines = _doctor(oidc_provider, issuer=root)
    assert status == 1
    assert lines[0].startswith("✗") and f"set AUTH_LOGTO_ISSUER to {oidc_provider.issuer}" in lines[0]
