"""Misconfiguration says how to fix it: an issuer without `/oidc`, a wrong client secret, and
`python -m logto_middleware doctor`."""

from __future__ import annotations

import io
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import ORIGIN, SECRET, Clock, Harness

from logto_middleware import LogtoConfig
from logto_middleware.__main__ import main
from logto_middleware._doctor import run_doctor
from logto_middleware._protocol import oauth
from logto_middleware.testing import FakeLogto

ROOT = "http://127.0.0.1:3001"  # FakeLogto's default issuer is ROOT + "/oidc", like a Logto tenant


@pytest.fixture(autouse=True)
def fresh_client_refused_log(monkeypatch: pytest.MonkeyPatch) -> None:
    # The rate limit is per process: each test starts with none said yet.
    monkeypatch.setattr(oauth, "_client_refused", oauth._ClientRefusedLog())


def _harness_with_issuer(kind: str, fake: FakeLogto, clock: Clock, issuer: str) -> Harness:
    """A harness whose configured issuer is `issuer`, talking to `fake`."""
    view = SimpleNamespace(issuer=issuer, client_id=fake.client_id, client_secret=fake.client_secret,
                           httpx_client=fake.httpx_client, async_httpx_client=fake.async_httpx_client)
    return Harness(kind, view, clock)  # type: ignore[arg-type]


def _records(caplog: pytest.LogCaptureFixture, text: str, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage() and r.levelno == level]


# -- an issuer without /oidc ----------------------------------------------------------------------

def test_issuer_without_oidc_names_the_fix_once(kind: str, fake: FakeLogto, clock: Clock,
                                               caplog: pytest.LogCaptureFixture) -> None:
    harness = _harness_with_issuer(kind, fake, clock, ROOT)
    caplog.set_level(logging.INFO, logger="logto_middleware")
    for _ in range(3):
        response = harness.start_sign_in()
        # Still a Configuration error: the other issuer is named, never used.
        assert response.status_code == 302
        assert response.headers["location"] == f"{ORIGIN}/api/auth/error?error=Configuration"
    hints = _records(caplog, f"set AUTH_LOGTO_ISSUER to {ROOT}/oidc", logging.ERROR)
    assert [r.getMessage().startswith("discovery at AUTH_LOGTO_ISSUER=") for r in hints].count(True) == 1
    probes = [path for _, path, _ in fake.requests if path == "/oidc/.well-known/openid-configuration"]
    assert len(probes) == 1  # probed once, not per request
    assert fake.counts["authorize"] == 0


def test_issuer_that_is_no_logto_gets_no_hint(kind: str, fake: FakeLogto, clock: Clock,
                                              caplog: pytest.LogCaptureFixture) -> None:
    harness = _harness_with_issuer(kind, fake, clock, ROOT + "/elsewhere")
    caplog.set_level(logging.INFO, logger="logto_middleware")
    response = harness.start_sign_in()
    assert response.headers["location"] == f"{ORIGIN}/api/auth/error?error=Configuration"
    assert not _records(caplog, "set AUTH_LOGTO_ISSUER", logging.ERROR)


# -- a wrong client secret --------------------------------------------------------------------------

def test_invalid_client_warns_naming_the_settings_once_a_minute(
        kind: str, fake: FakeLogto, clock: Clock, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    harness = Harness(kind, fake, clock)
    fake.client_secret = "the-real-secret-is-another"  # the app's AUTH_LOGTO_SECRET is now wrong
    caplog.set_level(logging.INFO, logger="logto_middleware")
    now = [1000.0]
    monkeypatch.setattr(oauth.time, "monotonic", lambda: now[0])
    for _ in range(2):
        callback = harness.sign_in()
        assert callback.headers["location"] == f"{ORIGIN}/api/auth/error?error=OAuthCallbackError"
    warnings = _records(caplog, "invalid_client", logging.WARNING)
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "AUTH_LOGTO_SECRET" in message and "AUTH_LOGTO_ID" in message
    assert harness.config.client_secret not in caplog.text
    now[0] += 61
    harness.sign_in()
    assert len(_records(caplog, "invalid_client", logging.WARNING)) == 2


# -- doctor ------------------------------------------------------------------------------------------

def _config(fake: FakeLogto, **changes: Any) -> LogtoConfig:
    settings: dict[str, Any] = {"issuer": fake.issuer, "client_id": fake.client_id,
                                "client_secret": fake.client_secret, "secret": SECRET}
    settings.update(changes)
    return LogtoConfig(**settings)


def _doctor(config: LogtoConfig, fake: FakeLogto) -> tuple[int, list[str]]:
    out = io.StringIO()
    status = run_doctor(config, out, transport=fake.transport())
    text = out.getvalue()
    assert config.client_secret not in text and SECRET not in text  # never the secrets
    return status, text.splitlines()


def test_fake_logto_tells_a_wrong_secret_from_an_unknown_code(fake: FakeLogto) -> None:
    # What the doctor's credentials check relies on, as Logto (oidc-provider) answers.
    client = fake.httpx_client()
    form = {"grant_type": "authorization_code", "code": "made-up", "redirect_uri": "http://x/cb",
            "code_verifier": "v" * 43}
    right = client.post(fake.url("/token"), data=form, auth=(fake.client_id, fake.client_secret))
    wrong = client.post(fake.url("/token"), data=form, auth=(fake.client_id, "wrong"))
    assert (right.json()["error"], wrong.json()["error"]) == ("invalid_grant", "invalid_client")


def test_doctor_all_good(fake: FakeLogto) -> None:
    status, lines = _doctor(_config(fake, base_url="https://app.example.com"), fake)
    assert status == 0, lines
    checks = [line for line in lines if line[:1] in "✓✗"]
    assert len(checks) == 3 and all(line.startswith("✓") for line in checks)
    assert "  register in Logto's console: Redirect URI https://app.example.com/api/auth/callback/logto" in lines
    assert "  register in Logto's console: Post sign-out redirect URI https://app.example.com/" in lines


def test_doctor_wrong_secret(fake: FakeLogto) -> None:
    status, lines = _doctor(_config(fake, client_secret="not-the-secret"), fake)
    assert status == 1
    credentials = next(line for line in lines if "client credentials" in line)
    assert credentials.startswith("✗") and "AUTH_LOGTO_SECRET" in credentials
    assert any("set AUTH_URL" in line for line in lines)


def test_doctor_issuer_without_oidc(fake: FakeLogto) -> None:
    status, lines = _doctor(_config(fake, issuer=ROOT, base_url="https://app.example.com"), fake)
    assert status == 1
    assert lines[0].startswith("✗") and f"set AUTH_LOGTO_ISSUER to {ROOT}/oidc" in lines[0]
    assert "  register in Logto's console: Redirect URI https://app.example.com/api/auth/callback/logto" in lines


def test_doctor_algorithms(fake: FakeLogto) -> None:
    status, lines = _doctor(_config(fake, id_token_algorithms=("RS256",)), fake)
    assert status == 1
    algorithms = next(line for line in lines if "ID token algorithms" in line)
    assert algorithms.startswith("✗") and "ES384" in algorithms


def test_doctor_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("AUTH_LOGTO_ISSUER", "AUTH_LOGTO_ID", "AUTH_LOGTO_SECRET", "AUTH_SECRET"):
        monkeypatch.delenv(name, raising=False)
    assert main(["doctor"]) == 1
    assert capsys.readouterr().out.startswith("✗ configuration: ")
    assert main([]) == 2
