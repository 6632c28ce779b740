"""Configuration: validated once, immutable, readable from the same variables Auth.js uses."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

# Both are public here too: `LogtoConfigError` lives with the other errors and `ProfileMapper`
# with the session it maps, so that neither module needs this one (no import cycle).
from .errors import LogtoConfigError
from .hooks import LogtoHooks
from .session import ProfileMapper

__all__ = ["LogtoConfig", "LogtoConfigError", "ProfileMapper"]

DEFAULT_SCOPES = ("openid", "offline_access", "profile", "email")
_WELL_KNOWN = "/.well-known/openid-configuration"
_DEFAULT_BASE_PATH = "/api/auth"
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
_MIN_SECRET_LENGTH = 32
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


# A password in a URL's query (`?sentinel_password=...`, `ssl_password=...`).
_QUERY_PASSWORD = re.compile(r"([?&][^=&#]*password=)[^&#]*", re.IGNORECASE)


def _shown(value: str) -> str:
    """`value` for an error message, a URL's credentials (`redis://:password@host`,
    `?sentinel_password=...`) masked: the message reaches logs and the doctor's output."""
    scheme, sep, rest = value.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        value = f"{scheme}://***@{rest.split('@', 1)[1]}"
    return _QUERY_PASSWORD.sub(r"\1***", value)


def _redis_url_problem(value: str) -> str | None:
    """What is wrong with Redis URL `value` (never its credentials), or None."""
    from .stores.redis import check_url

    try:
        check_url(value)
    except ValueError as exc:
        return str(exc)
    return None


def _fail(setting: str, env: str | None, problem: str) -> LogtoConfigError:
    where = f"{setting} ({env})" if env else setting
    return LogtoConfigError(f"logto_middleware: {where} {problem}")


@dataclass(frozen=True)
class LogtoConfig:
    """Settings of the middleware. Build it with keyword arguments or `LogtoConfig.from_env()`.

    `secret` may be a list: the first secret encrypts, all of them decrypt (rotation).

    `base_path` is where the routes are within the app: an app served under a prefix (ASGI
    `root_path`, WSGI `SCRIPT_NAME`) has them under the prefix too. `base_url` (`AUTH_URL`) is the
    app's public origin; a path in it is where the routes are on the site, as in Auth.js
    (`https://example.com/app/api/auth`: origin `https://example.com`, `base_path`
    `/app/api/auth`, `base_path_from_url` true); a different `base_path` beside it is an error.

    `refresh_lock` (`AUTH_REFRESH_LOCK`) is where the app's processes agree on who refreshes a
    session's tokens (see `logto_middleware.coordination`): empty, the default, for a private
    directory of this host (every worker process of one machine); an absolute directory; a
    `redis://` URL for processes on several hosts; `off` for none (one process only). Server-side
    sessions (`session_store`) always use their store's lock instead.

    Calls to the provider (discovery, JWKS, token endpoint, userinfo, revocation) are bounded
    twice: `http_timeout` bounds each step (connecting, sending, each read of the response), and
    `http_deadline` the whole call, however slowly the provider drips its answer; past it the
    call fails as the provider being unavailable. `None`, the default, is twice `http_timeout`
    (10 s). A read blocked in a WSGI worker ends at most one step's timeout after the deadline.

    `profile` maps the ID token claims to the user's `id`, `name`, `email` and `image`. It is
    the app's code, run under the fail-closed rule: if it raises (or answers no mapping) the
    sign-in ends on the `Configuration` error page, a session it cannot map is cleared, and the
    traceback is logged once per raise site.

    `hooks` is the app's `LogtoHooks` (a subclass's instance): refuse or redirect a sign-in,
    keep fields (roles, a tenant) in the session, shape `/session`, and hear of sign-ins,
    sign-outs, back-channel logouts and failed refreshes, as Auth.js's callbacks and events.
    """

    issuer: str
    client_id: str
    client_secret: str
    secret: str | Sequence[str]
    base_url: str | None = None
    trust_host: bool = False
    base_path: str = _DEFAULT_BASE_PATH
    scopes: str | Sequence[str] = DEFAULT_SCOPES
    post_login_redirect: str = "/"
    post_logout_redirect: str | None = None
    session_max_age: int = 30 * 24 * 3600
    session_update_age: int = 24 * 3600
    refresh_leeway: int = 60
    id_token_algorithms: Sequence[str] = ("ES384",)
    profile: ProfileMapper | None = None
    prompt: str | None = "consent"
    http_timeout: float = 5.0
    http_deadline: float | None = None
    clock_skew: int = 60
    session_store: str = "cookie"
    resources: Sequence[str] = ()
    session_format: str = "logto"
    refresh_lock: str = ""
    hooks: LogtoHooks | None = None
    secrets: tuple[str, ...] = field(init=False, repr=False)
    scope_list: tuple[str, ...] = field(init=False)
    base_path_from_url: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "issuer", _normalise_issuer(self.issuer))
        for name, env in (("client_id", "AUTH_LOGTO_ID"), ("client_secret", "AUTH_LOGTO_SECRET")):
            if not getattr(self, name):
                raise _fail(name, env, "is missing: copy it from the application page of Logto's console")
        secrets = (self.secret,) if isinstance(self.secret, str) else tuple(self.secret)
        secrets = tuple(s for s in secrets if s)
        if not secrets:
            raise _fail("secret", "AUTH_SECRET", "is missing: generate one with `openssl rand -base64 33`")
        for value in secrets:
            if len(value) < _MIN_SECRET_LENGTH:
                raise _fail("secret", "AUTH_SECRET", f"must be at least {_MIN_SECRET_LENGTH} characters long")
        set_(self, "secrets", secrets)
        scopes = self.scopes.split() if isinstance(self.scopes, str) else list(self.scopes)
        if "openid" not in scopes:
            raise _fail("scopes", None, "must include 'openid'")
        set_(self, "scope_list", tuple(dict.fromkeys(scopes)))
        base_path, from_url = self.base_path, False
        if self.base_url is not None:
            origin, url_path = _split_base_url(self.base_url)
            set_(self, "base_url", origin)
            if url_path:
                # As Auth.js: the path of AUTH_URL is where the routes are on the site.
                if _clean_path(base_path) not in ("/", _DEFAULT_BASE_PATH, url_path):
                    raise _fail("base_path", None, f"is {base_path!r} but base_url (AUTH_URL) puts the routes at "
                                                   f"{url_path!r}: set only one of them")
                base_path, from_url = url_path, True
        path = _clean_path(base_path)
        if path == "/" or not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", path):
            setting, env = ("base_url", "AUTH_URL") if from_url else ("base_path", "")
            raise _fail(setting, env, f"must have a path such as /api/auth, not {base_path!r}")
        set_(self, "base_path", path)
        set_(self, "base_path_from_url", from_url)
        if not self.id_token_algorithms or any(a.lower() == "none" or a.upper().startswith("HS")
                                               for a in self.id_token_algorithms):
            raise _fail("id_token_algorithms", None, "must list asymmetric algorithms only, e.g. ES384")
        set_(self, "id_token_algorithms", tuple(self.id_token_algorithms))
        for name in ("session_max_age", "session_update_age", "refresh_leeway", "clock_skew"):
            if getattr(self, name) < 0:
                raise _fail(name, None, "must not be negative")
        if self.session_max_age <= 0:
            raise _fail("session_max_age", None, "must be positive")
        resources = tuple(r.strip() for r in ([self.resources] if isinstance(self.resources, str) else self.resources)
                          if r.strip())
        for resource in resources:
            parts = urlsplit(resource)
            if not parts.scheme or parts.fragment:
                raise _fail("resources", "AUTH_LOGTO_RESOURCES",
                            f"must be absolute URIs (API indicators), not {resource!r}")
        set_(self, "resources", resources)
        store = self.session_store.strip()
        if store not in ("cookie", "memory"):
            problem = _redis_url_problem(store)
            if problem is not None:
                raise _fail("session_store", "AUTH_SESSION_STORE",
                            f"must be cookie, memory or a Redis URL (redis://, rediss://, unix://, redis+cluster://, "
                            f"redis+sentinel://, rediss+...), not {_shown(store)!r}: {problem}")
        set_(self, "session_store", store)
        if self.session_format not in ("logto", "authjs"):
            raise _fail("session_format", "AUTH_SESSION_FORMAT",
                        f"must be logto or authjs, not {self.session_format!r}")
        if self.session_format == "authjs" and store != "cookie":
            raise _fail("session_format", "AUTH_SESSION_FORMAT",
                        "authjs keeps the session in Auth.js's cookie: it cannot be combined with a server-side store")
        lock = self.refresh_lock.strip()
        if lock.lower() in ("off", "none", "false", "0"):
            lock = "off"
        elif lock and not os.path.isabs(lock) and (problem := _redis_url_problem(lock)) is not None:
            raise _fail("refresh_lock", "AUTH_REFRESH_LOCK",
                        f"must be empty (a private local directory), off, a Redis URL (redis://, rediss://, unix://, "
                        f"redis+cluster://, redis+sentinel://, rediss+...) or an absolute directory, "
                        f"not {_shown(self.refresh_lock)!r}: {problem}")
        set_(self, "refresh_lock", lock)
        if self.hooks is not None and not isinstance(self.hooks, LogtoHooks):
            if isinstance(self.hooks, type) and issubclass(self.hooks, LogtoHooks):
                raise _fail("hooks", None, f"must be an instance: hooks={self.hooks.__name__}()")
            raise _fail("hooks", None, f"must be an instance of a LogtoHooks subclass, not {self.hooks!r}")
        if self.http_timeout <= 0:
            raise _fail("http_timeout", None, "must be positive")
        if self.http_deadline is not None and self.http_deadline <= 0:
            raise _fail("http_deadline", None, "must be positive (or None: twice http_timeout)")

    @property
    def discovery_url(self) -> str:
        return self.issuer + _WELL_KNOWN

    @property
    def call_deadline(self) -> float:
        """The seconds one provider call may take in all: `http_deadline`, or twice `http_timeout`."""
        return self.http_deadline if self.http_deadline is not None else 2 * self.http_timeout

    @property
    def scope(self) -> str:
        return " ".join(self.scope_list)

    def replace(self, **changes: Any) -> LogtoConfig:
        """A copy with some settings changed."""
        if self.base_path_from_url and "base_url" not in changes and "base_path" not in changes:
            changes["base_url"] = f"{self.base_url}{self.base_path}"  # keeps the path it came from
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> LogtoConfig:
        """Read `AUTH_LOGTO_ISSUER`, `AUTH_LOGTO_ID`, `AUTH_LOGTO_SECRET`, `AUTH_SECRET` (and
        `AUTH_SECRET_1`, `AUTH_SECRET_2`, ...), `AUTH_URL`, `AUTH_TRUST_HOST`, `AUTH_LOGTO_RESOURCES`,
        `AUTH_SESSION_FORMAT`, `AUTH_SESSION_STORE`, `AUTH_REFRESH_LOCK`; keyword arguments win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, var in (("issuer", "AUTH_LOGTO_ISSUER"), ("client_id", "AUTH_LOGTO_ID"),
                          ("client_secret", "AUTH_LOGTO_SECRET")):
            values[name] = env.get(var, "").strip()
        values["secret"] = _secrets_from_env(env)
        if env.get("AUTH_URL", "").strip():
            values["base_url"] = env["AUTH_URL"].strip()
        trust = env.get("AUTH_TRUST_HOST", "").strip().lower()
        if trust not in _TRUE | _FALSE:
            raise _fail("trust_host", "AUTH_TRUST_HOST", f"must be true or false, not {trust!r}")
        values["trust_host"] = trust in _TRUE
        if env.get("AUTH_LOGTO_RESOURCES", "").strip():
            values["resources"] = env["AUTH_LOGTO_RESOURCES"].split(",")
        if env.get("AUTH_SESSION_FORMAT", "").strip():
            values["session_format"] = env["AUTH_SESSION_FORMAT"].strip().lower()
        if env.get("AUTH_SESSION_STORE", "").strip():
            values["session_store"] = env["AUTH_SESSION_STORE"].strip()
        if env.get("AUTH_REFRESH_LOCK", "").strip():
            values["refresh_lock"] = env["AUTH_REFRESH_LOCK"].strip()
        values.update(overrides)
        return cls(**values)


def _secrets_from_env(env: Mapping[str, str]) -> list[str]:
    """As `@auth/core` reads them: `AUTH_SECRET_3`, `AUTH_SECRET_2`, `AUTH_SECRET_1` (each when set;
    the highest number is the newest and encrypts), then `AUTH_SECRET` (which may itself be a
    comma-separated list, an addition of ours)."""
    numbered = [env[f"AUTH_SECRET_{i}"].strip() for i in (3, 2, 1) if env.get(f"AUTH_SECRET_{i}", "").strip()]
    return numbered + [s.strip() for s in env.get("AUTH_SECRET", "").split(",") if s.strip()]


def _normalise_issuer(value: str) -> str:
    issuer = (value or "").strip()
    if not issuer:
        raise _fail("issuer", "AUTH_LOGTO_ISSUER", "is missing: e.g. https://your-tenant.logto.app/oidc")
    if issuer.endswith(_WELL_KNOWN):
        issuer = issuer[: -len(_WELL_KNOWN)]
    issuer = issuer.rstrip("/")
    parts = urlsplit(issuer)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise _fail("issuer", "AUTH_LOGTO_ISSUER", f"must be an https URL, not {value!r}")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
        raise _fail("issuer", "AUTH_LOGTO_ISSUER",
                    "must use https (plain http is allowed only for localhost, 127.0.0.1 and ::1)")
    if parts.query or parts.fragment:
        raise _fail("issuer", "AUTH_LOGTO_ISSUER", "must not have a query or fragment")
    return issuer


def _clean_path(path: str) -> str:
    return "/" + path.strip("/")


def _split_base_url(value: str) -> tuple[str, str]:
    """The origin of `value` and its path ("" for none or "/")."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _fail("base_url", "AUTH_URL", f"must be an absolute http(s) URL, not {value!r}")
    if parts.query or parts.fragment:
        raise _fail("base_url", "AUTH_URL", f"must not have a query or fragment, not {value!r}")
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}".lower(), path
