"""LogtoConfig: environment variables, normalisation, and errors that name the setting."""

from __future__ import annotations

import pytest

from logto_middleware import LogtoASGIMiddleware, LogtoConfig, LogtoConfigError

GOOD = {
    "AUTH_LOGTO_ISSUER": "https://tenant.logto.app/oidc",
    "AUTH_LOGTO_ID": "app-id",
    "AUTH_LOGTO_SECRET": "app#secret:1",
    "AUTH_SECRET": "s" * 32,
}


def test_from_env_reads_the_auth_js_variables() -> None:
    config = LogtoConfig.from_env(GOOD)
    assert config.issuer == "https://tenant.logto.app/oidc"
    assert config.client_id == "app-id"
    assert config.client_secret == "app#secret:1"
    assert config.secrets == ("s" * 32,)
    assert config.scope == "openid offline_access profile email"
    assert config.id_token_algorithms == ("ES384",)
    assert config.base_path == "/api/auth"
    assert config.prompt == "consent"
    assert (config.session_max_age, config.session_update_age, config.refresh_leeway) == (30 * 86400, 86400, 60)


def test_well_known_url_is_normalised_to_the_issuer() -> None:
    env = {**GOOD, "AUTH_LOGTO_ISSUER": "https://tenant.logto.app/oidc/.well-known/openid-configuration"}
    assert LogtoConfig.from_env(env).issuer == "https://tenant.logto.app/oidc"
    assert LogtoConfig.from_env({**GOOD, "AUTH_LOGTO_ISSUER": "https://t.logto.app/oidc/"}).issuer == (
        "https://t.logto.app/oidc")


def test_secret_rotation_from_list_and_numbered_variables() -> None:
    a, b, c = "a" * 32, "b" * 32, "c" * 32
    assert LogtoConfig.from_env({**GOOD, "AUTH_SECRET": f"{a},{b}"}).secrets == (a, b)
    # As @auth/core: the highest-numbered secret is the newest and encrypts; AUTH_SECRET comes last.
    assert LogtoConfig.from_env({**GOOD, "AUTH_SECRET": a, "AUTH_SECRET_1": b, "AUTH_SECRET_2": c}).secrets == (c, b, a)
    assert LogtoConfig.from_env({**GOOD, "AUTH_SECRET": a, "AUTH_SECRET_2": c}).secrets == (c, a)  # read independently
    assert LogtoConfig.from_env(GOOD, secret=[b, a]).secrets == (b, a)


def test_keyword_arguments_override_the_environment() -> None:
    config = LogtoConfig.from_env(GOOD, client_id="other", base_path="/auth/")
    assert config.client_id == "other"
    assert config.base_path == "/auth"


def test_auth_url_and_trust_host() -> None:
    config = LogtoConfig.from_env({**GOOD, "AUTH_URL": "https://App.Example.com/some/path", "AUTH_TRUST_HOST": "true"})
    assert config.base_url == "https://app.example.com"
    assert config.trust_host is True
    with pytest.raises(LogtoConfigError, match="AUTH_TRUST_HOST"):
        LogtoConfig.from_env({**GOOD, "AUTH_TRUST_HOST": "maybe"})


@pytest.mark.parametrize(("missing", "named"), [
    ("AUTH_LOGTO_ISSUER", "AUTH_LOGTO_ISSUER"), ("AUTH_LOGTO_ID", "AUTH_LOGTO_ID"),
    ("AUTH_LOGTO_SECRET", "AUTH_LOGTO_SECRET"), ("AUTH_SECRET", "AUTH_SECRET"),
])
def test_missing_values_name_their_variable(missing: str, named: str) -> None:
    env = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(LogtoConfigError, match=named):
        LogtoConfig.from_env(env)


def test_short_secret_is_refused() -> None:
    with pytest.raises(LogtoConfigError, match=r"AUTH_SECRET.*32"):
        LogtoConfig.from_env({**GOOD, "AUTH_SECRET": "short"})
    with pytest.raises(LogtoConfigError, match="AUTH_SECRET"):
        LogtoConfig.from_env({**GOOD, "AUTH_SECRET": "s" * 32, "AUTH_SECRET_1": "short"})


@pytest.mark.parametrize("issuer", ["http://tenant.logto.app/oidc", "ftp://x/oidc", "not a url", "https://t/oidc?x=1"])
def test_bad_issuers_are_refused(issuer: str) -> None:
    with pytest.raises(LogtoConfigError, match="AUTH_LOGTO_ISSUER"):
        LogtoConfig.from_env({**GOOD, "AUTH_LOGTO_ISSUER": issuer})


@pytest.mark.parametrize("issuer", ["http://localhost:3001/oidc", "http://127.0.0.1/oidc", "http://[::1]:3001/oidc"])
def test_plain_http_is_allowed_on_loopback(issuer: str) -> None:
    assert LogtoConfig.from_env({**GOOD, "AUTH_LOGTO_ISSUER": issuer}).issuer == issuer


def test_symmetric_or_none_algorithms_are_refused() -> None:
    for algorithms in (("HS256",), ("none",), ()):
        with pytest.raises(LogtoConfigError, match="id_token_algorithms"):
            LogtoConfig.from_env(GOOD, id_token_algorithms=algorithms)


def test_scopes_must_include_openid() -> None:
    with pytest.raises(LogtoConfigError, match="openid"):
        LogtoConfig.from_env(GOOD, scopes="profile email")
    assert LogtoConfig.from_env(GOOD, scopes=["openid", "email", "email"]).scope == "openid email"


def test_middleware_reads_the_environment_when_no_config_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in GOOD:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(LogtoConfigError, match="AUTH_LOGTO_ISSUER"):
        LogtoASGIMiddleware(lambda *a: None)  # type: ignore[arg-type,return-value]
    for key, value in GOOD.items():
        monkeypatch.setenv(key, value)
    assert LogtoASGIMiddleware(lambda *a: None).config.client_id == "app-id"  # type: ignore[arg-type,return-value]


def test_the_call_deadline_follows_http_timeout_unless_set() -> None:
    config = LogtoConfig.from_env(GOOD)
    assert config.http_deadline is None and config.call_deadline == 10.0
    assert config.replace(http_timeout=2.0).call_deadline == 4.0
    assert config.replace(http_deadline=3.0).call_deadline == 3.0
    for bad in (0, -1.0):
        with pytest.raises(LogtoConfigError, match="http_deadline"):
            config.replace(http_deadline=bad)


@pytest.mark.parametrize("setting", ["session_store", "refresh_lock"])
def test_a_refused_url_setting_never_shows_its_password(setting: str) -> None:
    """The message reaches logs and the doctor's output: a URL's credentials are masked."""
    with pytest.raises(LogtoConfigError) as refused:
        LogtoConfig.from_env(GOOD, **{setting: "memcached://user:hunter2@cache.internal:6379/0"})
    assert "hunter2" not in str(refused.value)
    assert "memcached://***@cache.internal:6379/0" in str(refused.value)
    # A Redis URL with something wrong after its credentials.
    with pytest.raises(LogtoConfigError, match="service_name") as refused:
        LogtoConfig.from_env(GOOD, **{setting: "redis+sentinel://user:hunter2@s1:26379,s2:26379"})
    assert "hunter2" not in str(refused.value)
    assert "redis+sentinel://***@s1:26379,s2:26379" in str(refused.value)
    # The sentinels' password goes in the query.
    with pytest.raises(LogtoConfigError, match="query parameter") as refused:
        LogtoConfig.from_env(GOOD, **{setting: "redis+sentinel://s1:26379/m?sentinel_password=hunter2&x=1"})
    assert "hunter2" not in str(refused.value)
    assert "?sentinel_password=***&x=1" in str(refused.value)


@pytest.mark.parametrize("setting", ["session_store", "refresh_lock"])
@pytest.mark.parametrize("url", [
    "redis://localhost:6379/0", "rediss://:pw@cache:6380/1?ssl_cert_reqs=required", "unix:///run/redis.sock?db=2",
    "redis+cluster://n1:7000,n2:7001", "rediss+cluster://:pw@n1:7000?ssl_ca_certs=/etc/ca.pem",
    "redis+sentinel://s1:26379,s2:26379/mymaster", "rediss+sentinel://:pw@s1:26379/mymaster/2?sentinel_password=x",
])
def test_every_redis_deployment_is_a_valid_setting(setting: str, url: str) -> None:
    assert getattr(LogtoConfig.from_env(GOOD, **{setting: url}), setting) == url
