"""``FakeLogto``: an in-memory Logto (OpenID Connect) provider for tests and demos.

It behaves like Logto where a relying party can tell: discovery, ES384 ID tokens,
PKCE-only code flow, ``iss`` in authorization responses, refresh-token rotation and
reuse detection, sign-out, and API access tokens: RFC 8707 ``resource`` indicators and
Logto organization tokens (ES384 ``at+jwt`` JWTs from the refresh-token grant).
It is NOT a security product.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote_plus, urlsplit

import httpx
from joserfc.jwk import ECKey, Key, KeySetSerialization

from . import _claims, _keys, pages
from ._http import (
    NO_STORE,
    FakeRequest,
    Reply,
    asgi_app,
    html_reply,
    json_reply,
    mock_transport,
    redirect_reply,
)
from ._state import AccessToken, AuthCode, Grant, RefreshToken, Session, random_token

if TYPE_CHECKING:  # `FakeLogto.app` needs Starlette (`[dev-provider]`); the rest of it does not
    from starlette.applications import Starlette

RotationMode = Literal["logto", "always", "never"]
TokenHook = Callable[[dict[str, Any]], dict[str, Any] | httpx.Response | None]

ENDPOINTS: dict[str, tuple[str, frozenset[str]]] = {
    "/.well-known/openid-configuration": ("discovery", frozenset({"GET", "HEAD"})),
    "/jwks": ("jwks", frozenset({"GET", "HEAD"})),
    "/auth": ("authorize", frozenset({"GET", "POST"})),
    "/token": ("token", frozenset({"POST"})),
    "/me": ("userinfo", frozenset({"GET", "POST"})),
    "/session/end": ("end_session", frozenset({"GET", "POST"})),
    "/token/revocation": ("revocation", frozenset({"POST"})),
}
SESSION_COOKIE = "_fake_logto_session"
ID_TOKEN_TTL = 3600
CODE_TTL = 60
ROTATE_AFTER = 0.7
DEFAULT_ISSUER = "http://127.0.0.1:3001/oidc"
DEFAULT_CLIENT_ID = "fake-client"
DEFAULT_CLIENT_SECRET = "fake#secret:with:colons"
DEFAULT_ROTATION: RotationMode = "logto"
_PKCE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
ACCESS_TOKEN_TYP = "at+jwt"
LOGOUT_TOKEN_TYP = "logout+jwt"
LOGOUT_TOKEN_TTL = 120  # oidc-provider's (Logto's) fixed lifetime of a back-channel logout token
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
ORGANIZATIONS_SCOPE = "urn:logto:scope:organizations"
ORGANIZATION_RESOURCE = "urn:logto:resource:organizations"
"""Logto's reserved API resource whose scopes are the organization template's scopes."""
UNKNOWN_TARGET = "resource indicator is missing, or unknown"


def organization_audience(organization_id: str) -> str:
    """The ``aud`` of a Logto organization token: ``urn:logto:organization:<id>``."""
    return f"urn:logto:organization:{organization_id}"


@dataclass(frozen=True)
class _Target:
    """What a JWT access token is for: an API resource and/or an organization."""

    audience: str
    scopes: tuple[str, ...]
    organization_id: str | None = None


class OAuthError(Exception):
    """An OAuth error response (``error`` / ``error_description`` JSON)."""

    def __init__(
        self,
        error: str,
        description: str,
        status: int = 400,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.description, self.status = error, description, status
        self.headers = list(headers)

    def reply(self) -> Reply:
        """The JSON error response."""
        body = {"error": self.error, "error_description": self.description}
        return json_reply(body, self.status, [*NO_STORE, *self.headers])


class _AuthError(Exception):
    """An authorization-endpoint error to redirect back to the client."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.description = error, description


class FakeLogto:
    """A fake Logto OpenID provider; see the module docstring.

    Serve it with `app` (ASGI) or `transport` (httpx), inspect
    `requests` / `counts`, and misbehave on purpose with
    `token_response_hook`, `discovery_overrides`, `jwks_override`,
    `outage` and `fail_next`.

    API resources (`resources`), organization memberships (`organizations`),
    organization scopes (`organization_scopes`) and per-user scope limits
    (`grantable_scopes`) drive the JWT access tokens of the refresh-token grant.

    Every ID token carries `auth_time` (a refresh keeps the sign-in's); `max_age` is
    honoured like oidc-provider: a provider session older than it asks for credentials again,
    and `max_age=0` is `prompt=login`.
    """

    def __init__(
        self,
        issuer: str = DEFAULT_ISSUER,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        redirect_uris: Iterable[str] | None = None,
        post_logout_redirect_uris: Iterable[str] | None = None,
        access_token_ttl: int = 3600,
        refresh_token_ttl: int = 14 * 24 * 3600,
        rotate_refresh_token: RotationMode = DEFAULT_ROTATION,
        auto_login: str | None = None,
        clock: Callable[[], float] = time.time,
        resources: Mapping[str, Iterable[str]] | None = None,
        organizations: Mapping[str, Iterable[str]] | None = None,
        organization_scopes: Iterable[str] = (),
        grantable_scopes: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        parts = urlsplit(self.issuer)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = None if redirect_uris is None else list(redirect_uris)
        self.post_logout_redirect_uris = (
            None if post_logout_redirect_uris is None else list(post_logout_redirect_uris)
        )
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self.rotate_refresh_token: RotationMode = rotate_refresh_token
        self.auto_login = auto_login
        self.clock = clock

        self.users: dict[str, dict[str, Any]] = {}
        """Per-user claim overrides (None removes a claim), e.g. ``{"alice": {"name": None}}``."""
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        """Every request seen: (method, path, query and form parameters)."""
        self.counts: Counter[str] = Counter()
        """Requests per endpoint; the token endpoint counts ``token:<grant_type>``."""
        self.token_response_hook: TokenHook | None = None
        """Rewrites the successful token JSON (return a dict, or None after mutating it in
        place) or replaces the whole response (return an ``httpx.Response``)."""
        self.discovery_overrides: dict[str, Any] = {}
        """Merged into the discovery document; None values remove a key."""
        self.jwks_override: dict[str, Any] | None = None
        """Served instead of the real JWK Set when set."""
        self.outage: set[str] = set()
        """Endpoint names (or ``token:<grant_type>``) that answer 503 until removed."""
        self.resources: dict[str, list[str]] = {
            indicator: list(scopes) for indicator, scopes in (resources or {}).items()
        }
        """API resources: indicator -> the scopes it defines, e.g.
        ``{"https://api.example.com": ["read:items", "write:items"]}``."""
        self.organizations: dict[str, list[str]] = {
            user: list(ids) for user, ids in (organizations or {}).items()
        }
        """User name -> the ids of the organizations the user is a member of."""
        self.organization_scopes: list[str] = list(organization_scopes)
        """The organization template's scopes (granted through the reserved resource
        ``urn:logto:resource:organizations``, issued in organization tokens)."""
        self.grantable_scopes: dict[str, list[str]] = {
            user: list(scopes) for user, scopes in (grantable_scopes or {}).items()
        }
        """User name -> the only resource and organization scopes the user may get (like
        Logto roles); users not listed get every scope they request."""

        self._lock = threading.RLock()
        self._failures: dict[str, deque[int]] = {}
        self._keys: list[ECKey] = [_keys.new_signing_key()]
        self._sessions: dict[str, Session] = {}
        self._grants: dict[str, Grant] = {}
        self._codes: dict[str, AuthCode] = {}
        self._refresh_tokens: dict[str, RefreshToken] = {}
        self._access_tokens: dict[str, AccessToken] = {}
        self._app: Starlette | None = None
        self._handlers: dict[str, Callable[[FakeRequest], Reply]] = {
            "discovery": self._discovery,
            "jwks": self._jwks,
            "authorize": self._authorize,
            "token": self._token,
            "userinfo": self._userinfo,
            "end_session": self._end_session,
            "revocation": self._revocation,
        }

    # ----------------------------------------------------------------- adapters

    @property
    def app(self) -> Starlette:
        """The provider as a Starlette ASGI app."""
        if self._app is None:
            self._app = asgi_app(self.handle)
        return self._app

    def transport(self) -> httpx.MockTransport:
        """An httpx transport (sync and async) serving the provider's origin."""
        return mock_transport(self.handle, self.origin)

    def httpx_client(self, **kwargs: Any) -> httpx.Client:
        """An ``httpx.Client`` wired to `transport`, based at the issuer's origin."""
        kwargs.setdefault("base_url", self.origin)
        return httpx.Client(transport=self.transport(), **kwargs)

    def async_httpx_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` wired to `transport`, based at the issuer's origin."""
        kwargs.setdefault("base_url", self.origin)
        return httpx.AsyncClient(transport=self.transport(), **kwargs)

    def url(self, endpoint_path: str) -> str:
        """The absolute URL of an endpoint path such as ``/token``."""
        return f"{self.issuer}{endpoint_path}"

    # -------------------------------------------------------------- test knobs

    @property
    def current_kid(self) -> str:
        """The ``kid`` of the key that signs ID tokens."""
        with self._lock:
            return str(self._keys[-1].kid)

    def jwks(self) -> KeySetSerialization:
        """The public JWK Set (ignores `jwks_override`)."""
        with self._lock:
            return _keys.public_jwks(self._keys)

    def rotate_keys(self, *, drop_old: bool = False) -> str:
        """Add a new signing key (returned ``kid``); old keys stay published unless dropped."""
        key = _keys.new_signing_key()
        with self._lock:
            self._keys = [key] if drop_old else [*self._keys, key]
        return str(key.kid)

    def fail_next(self, endpoint: str, status: int = 503, times: int = 1) -> None:
        """Make the next ``times`` requests to ``endpoint`` answer ``status``."""
        names = {name for name, _ in ENDPOINTS.values()}
        if endpoint not in names and not endpoint.startswith("token:"):
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {sorted(names)}")
        with self._lock:
            self._failures.setdefault(endpoint, deque()).extend([status] * times)

    def sign_id_token(
        self,
        claims: dict[str, Any],
        *,
        alg: str = _keys.ALG,
        kid: str | None = None,
        key: Key | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """Sign arbitrary ``claims`` (for forging tokens in tests).

        ``kid`` defaults to the current signing key's, even with a foreign ``key``;
        ``headers`` are merged into the JOSE header, a None value removes one.
        ``alg="none"`` produces an unsigned token.
        """
        with self._lock:
            signing_key = self._keys[-1]
        header = {"alg": alg, "typ": "JWT", "kid": kid or str(signing_key.kid)}
        header = _claims.merge(header, headers or {})
        return _keys.sign(header, claims, key if key is not None else signing_key)

    def sign_access_token(
        self,
        claims: dict[str, Any],
        *,
        alg: str = _keys.ALG,
        kid: str | None = None,
        key: Key | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """Sign arbitrary access-token ``claims`` (header ``typ: at+jwt``), like
        `sign_id_token`; see `make_access_token_claims`."""
        typ = {"typ": ACCESS_TOKEN_TYP}
        return self.sign_id_token(claims, alg=alg, kid=kid, key=key, headers={**typ, **(headers or {})})

    def sign_logout_token(
        self,
        claims: dict[str, Any],
        *,
        alg: str = _keys.ALG,
        kid: str | None = None,
        key: Key | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """Sign back-channel logout-token ``claims`` (header ``typ: logout+jwt``), like
        `sign_id_token`; see `make_logout_token_claims`."""
        typ = {"typ": LOGOUT_TOKEN_TYP}
        return self.sign_id_token(claims, alg=alg, kid=kid, key=key, headers={**typ, **(headers or {})})

    def make_logout_token_claims(
        self,
        user: str | None = None,
        *,
        sid: str | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """The claims of a fresh back-channel logout token for ``user`` (its ``sub``) and/or
        the provider session ``sid``, shaped like Logto's: ``iat``, ``exp`` two minutes later,
        a fresh ``jti``, the logout event; ``overrides`` (None removes) last."""
        if user is None and sid is None:
            raise ValueError("a logout token names a user, a session (sid), or both")
        now = int(self.clock())
        claims = {
            "iss": self.issuer,
            "aud": self.client_id,
            "iat": now,
            "exp": now + LOGOUT_TOKEN_TTL,
            "jti": random_token(),
            "sub": self._subject(user) if user is not None else None,
            "sid": sid,
            "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
        }
        return _claims.merge(_claims.merge({}, claims), overrides)

    def make_access_token_claims(
        self,
        user: str,
        audience: str,
        *,
        scope: str = "",
        **overrides: Any,
    ) -> dict[str, Any]:
        """The claims of a fresh JWT access token for ``user`` and ``audience`` (an API
        resource indicator, or `organization_audience`); ``overrides`` (None removes)
        last. An empty ``scope`` is left out, like Logto does."""
        now = int(self.clock())
        claims = {
            "jti": random_token(),
            "sub": self._subject(user),
            "iat": now,
            "exp": now + self.access_token_ttl,
            "scope": scope or None,
            "client_id": self.client_id,
            "iss": self.issuer,
            "aud": audience,
        }
        return _claims.merge(_claims.merge({}, claims), overrides)

    def make_id_token_claims(
        self,
        user: str,
        *,
        nonce: str | None = None,
        scope: str = "openid profile email",
        **overrides: Any,
    ) -> dict[str, Any]:
        """The claims of a fresh ID token for ``user``; ``overrides`` (None removes) last."""
        now = int(self.clock())
        claims = self._id_token_claims(user, scope.split(), now, nonce=nonce)
        return _claims.merge(claims, overrides)

    def user_claims(self, user: str) -> dict[str, Any]:
        """All claims of ``user``, with `users` overrides applied.

        Besides the profile, Logto's scope-gated claims get defaults: ``custom_data``
        and ``identities`` ``{}``, ``sso_identities`` and ``organization_roles`` ``[]``,
        ``organizations`` from `organizations`.
        """
        defaults = {
            "custom_data": {},
            "identities": {},
            "sso_identities": [],
            "organizations": list(self.organizations.get(user, [])),
            "organization_roles": [],
        }
        return _claims.merge({**_claims.profile(user), **defaults}, self.users.get(user) or {})

    def _subject(self, user: str) -> str:
        return str(self.user_claims(user).get("sub") or _claims.subject_for(user))

    def authorize(self, url: str, login: str | None = None) -> str:
        """Run an authorization request URL in-process; return the redirect ``Location``.

        Signs in as ``login`` (else `auto_login`); raises if no redirect results.
        """
        target = httpx.URL(url)
        if login is not None:
            target = target.copy_merge_params({"login": login})
        with self.httpx_client() as client:
            response = client.get(target)
        location = response.headers.get("location")
        if response.status_code != 302 or location is None:
            raise AssertionError(f"no redirect from {url}: {response.status_code} {response.text}")
        return str(location)

    # ---------------------------------------------------------------- dispatch

    def handle(self, request: FakeRequest) -> Reply:
        """Answer one request (the core both adapters share)."""
        if not request.path.startswith(self._base_path):
            return self._not_found(request)
        route = ENDPOINTS.get(request.path[len(self._base_path) :].rstrip("/") or "/")
        if route is None:
            return self._not_found(request)
        name, methods = route
        with self._lock:
            self.requests.append((request.method, request.path, request.params))
            key = f"token:{request.form.get('grant_type', '')}" if name == "token" else name
            self.counts[key] += 1
            status = self._injected_failure(key)
            if status is None and key != name:
                status = self._injected_failure(name)
            if status is not None:
                body = {"error": "server_error", "error_description": f"{name} is unavailable"}
                return json_reply(body, status, NO_STORE)
            if request.method not in methods:
                return OAuthError("invalid_request", "method not allowed", 405).reply()
            try:
                return self._handlers[name](request)
            except OAuthError as error:
                return error.reply()

    def _injected_failure(self, key: str) -> int | None:
        if key in self.outage:
            return 503
        queue = self._failures.get(key)
        return queue.popleft() if queue else None

    def _not_found(self, request: FakeRequest) -> Reply:
        if request.method == "GET" and request.path in ("", "/"):
            return html_reply(pages.index_page(self.issuer, self.client_id))
        return OAuthError("invalid_request", f"unrecognized route {request.path}", 404).reply()

    # ---------------------------------------------------------------- metadata

    def _discovery(self, request: FakeRequest) -> Reply:
        claims = {c for claims in _claims.SCOPE_CLAIMS.values() for c in claims}
        document: dict[str, Any] = {
            "issuer": self.issuer,
            "authorization_endpoint": self.url("/auth"),
            "token_endpoint": self.url("/token"),
            "userinfo_endpoint": self.url("/me"),
            "jwks_uri": self.url("/jwks"),
            "end_session_endpoint": self.url("/session/end"),
            "revocation_endpoint": self.url("/token/revocation"),
            "scopes_supported": list(_claims.SUPPORTED_SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [_keys.ALG],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": sorted(claims | set(_claims.PROTOCOL_CLAIMS)),
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "authorization_response_iss_parameter_supported": True,
        }
        return json_reply(_claims.merge(document, self.discovery_overrides))

    def _jwks(self, request: FakeRequest) -> Reply:
        body: Any = self.jwks_override if self.jwks_override is not None else self.jwks()
        return json_reply(body, content_type="application/jwk-set+json")

    # ----------------------------------------------------------- authorization

    def _authorize(self, request: FakeRequest) -> Reply:
        params = request.params
        duplicates = request.duplicates - {"resource"}  # RFC 8707: resource may repeat
        if duplicates:
            return self._error_page(f"duplicate parameters: {', '.join(sorted(duplicates))}")
        if params.get("client_id") != self.client_id:
            return self._error_page("unknown or missing client_id")
        redirect_uri = params.get("redirect_uri", "")
        if not self._redirect_uri_ok(redirect_uri):
            return self._error_page("redirect_uri did not match any of the registered ones")
        try:
            return self._authorize_checked(request, redirect_uri)
        except _AuthError as error:
            return redirect_reply(
                redirect_uri,
                {
                    "error": error.error,
                    "error_description": error.description,
                    "state": params.get("state"),
                    "iss": self.issuer,
                },
            )

    def _authorize_checked(self, request: FakeRequest, redirect_uri: str) -> Reply:
        params = request.params
        prompt = self._validate_authorization(params)
        resources = self._requested_resources(request)
        action, login = params.get("action"), params.get("login")
        if action == "cancel" or login == "deny":
            raise _AuthError("access_denied", "End-User aborted interaction")
        session = self._pick_session(request, prompt)
        if session is None:
            if "none" in prompt:
                raise _AuthError("login_required", "End-User authentication is required")
            error = "Enter a user name." if action == "login" else None
            if login is not None and not _claims.valid_user_name(login):
                error = "User names use letters, digits, '.', '_' and '-'."
            return self._login_page(request, error)
        requested = list(dict.fromkeys(params["scope"].split()))
        scopes = [s for s in requested if s in _claims.SUPPORTED_SCOPES]
        if "consent" not in prompt:
            scopes = [s for s in scopes if s != "offline_access"]
        grant = Grant(
            random_token(),
            session.user,
            self.client_id,
            tuple(scopes),
            session.sid,
            session.auth_time,
            resources=resources,
            resource_scopes={
                r: self._grantable(session.user, r, requested) for r in resources
            },
        )
        code = random_token()
        self._grants[grant.grant_id] = grant
        self._codes[code] = AuthCode(
            grant.grant_id,
            redirect_uri,
            params["code_challenge"],
            params.get("nonce"),
            self.clock() + CODE_TTL,
        )
        return redirect_reply(
            redirect_uri,
            {"code": code, "state": params.get("state"), "iss": self.issuer},
            [self._session_cookie(session.sid)],
        )

    def _validate_authorization(self, params: dict[str, str]) -> set[str]:
        """Check the request parameters; return the ``prompt`` values."""
        response_type = params.get("response_type")
        if response_type is None:
            raise _AuthError("invalid_request", "missing required parameter 'response_type'")
        if response_type != "code":
            raise _AuthError("unsupported_response_type", "only response_type=code is supported")
        if params.get("response_mode", "query") != "query":
            raise _AuthError("invalid_request", "only response_mode=query is supported")
        if "openid" not in params.get("scope", "").split():
            raise _AuthError("invalid_scope", "openid scope must be requested")
        challenge = params.get("code_challenge")
        if challenge is None:
            raise _AuthError("invalid_request", "missing required parameter 'code_challenge'")
        if params.get("code_challenge_method") != "S256":
            raise _AuthError("invalid_request", "code_challenge_method must be S256")
        if not 43 <= len(challenge) <= 128 or not set(challenge) <= _PKCE_CHARS:
            raise _AuthError("invalid_request", "code_challenge is not a valid S256 challenge")
        prompt = set(params.get("prompt", "").split())
        if prompt - {"none", "login", "consent"}:
            raise _AuthError("invalid_request", "unsupported prompt value requested")
        if "none" in prompt and len(prompt) > 1:
            raise _AuthError("invalid_request", "prompt none must only be used alone")
        max_age = params.get("max_age")
        if max_age is not None and (not max_age.isascii() or not max_age.isdigit() or len(max_age) > 15):
            raise _AuthError("invalid_request", "invalid max_age parameter value")
        if max_age is not None and int(max_age) == 0:
            prompt.add("login")  # oidc-provider turns max_age=0 into prompt=login
        return prompt

    def _requested_resources(self, request: FakeRequest) -> tuple[str, ...]:
        """The ``resource`` values (repeatable; comma-separated lists are split, like Logto);
        unknown ones are ``invalid_target``."""
        values = (v.strip() for value in request.values("resource") for v in value.split(","))
        resources = tuple(dict.fromkeys(v for v in values if v))
        for indicator in resources:
            parts = urlsplit(indicator)
            if not parts.scheme:
                raise _AuthError("invalid_target", "resource indicator must be an absolute URI")
            if "#" in indicator:
                raise _AuthError(
                    "invalid_target", "resource indicator must not contain a fragment component"
                )
            if self._resource_scopes(indicator) is None:
                raise _AuthError("invalid_target", UNKNOWN_TARGET)
        return resources

    def _resource_scopes(self, indicator: str) -> list[str] | None:
        """The scopes an API resource defines; None for an unknown indicator."""
        if indicator == ORGANIZATION_RESOURCE:
            return self.organization_scopes
        return self.resources.get(indicator)

    def _user_may(self, user: str, scope: str) -> bool:
        allowed = self.grantable_scopes.get(user)
        return allowed is None or scope in allowed

    def _grantable(self, user: str, indicator: str, requested: Iterable[str]) -> tuple[str, ...]:
        """The ``requested`` scopes that resource ``indicator`` defines and ``user`` may get."""
        defined = self._resource_scopes(indicator) or []
        return tuple(s for s in requested if s in defined and self._user_may(user, s))

    def _pick_session(self, request: FakeRequest, prompt: set[str]) -> Session | None:
        """Who signs in: ``login``, else `auto_login`, else the cookie's session."""
        login = request.params.get("login") or self.auto_login
        if login is not None:
            if not _claims.valid_user_name(login):
                return None
            fresh = Session(random_token(), login, int(self.clock()))
            self._sessions[fresh.sid] = fresh
            return fresh
        session = self._sessions.get(request.cookie(SESSION_COOKIE) or "")
        if session is None or not session.active or "login" in prompt:
            return None
        max_age = request.params.get("max_age")
        if max_age is not None and self.clock() - session.auth_time > int(max_age):
            return None  # signed in too long ago: ask for credentials again (oidc-provider's check)
        return session

    def _login_page(self, request: FakeRequest, error: str | None) -> Reply:
        params = request.params
        hidden = [(k, v) for k, v in params.items() if k not in ("login", "action", "resource")]
        hidden += [("resource", value) for value in request.values("resource")]
        html = pages.login_page(
            self.url("/auth"),
            hidden,
            login_hint=params.get("login", params.get("login_hint", "")),
            direct_sign_in=params.get("direct_sign_in"),
            error=error,
        )
        return html_reply(html)

    def _redirect_uri_ok(self, uri: str) -> bool:
        if self.redirect_uris is not None:
            return uri in self.redirect_uris
        parts = urlsplit(uri)
        return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.fragment

    def _session_cookie(self, sid: str, *, clear: bool = False) -> tuple[str, str]:
        value = f"{SESSION_COOKIE}={'' if clear else sid}; Path={self._base_path or '/'}"
        value += "; HttpOnly; SameSite=Lax" + ("; Max-Age=0" if clear else "")
        return ("set-cookie", value)

    def _error_page(self, message: str, status: int = 400) -> Reply:
        return html_reply(pages.error_page("Invalid request", message), status)

    # ------------------------------------------------------------------- tokens

    def _token(self, request: FakeRequest) -> Reply:
        if request.duplicates - {"resource"}:
            raise OAuthError("invalid_request", "parameters must not be provided twice")
        self._authenticate_client(request)
        grant_type = request.form.get("grant_type")
        if grant_type is None:
            raise OAuthError("invalid_request", "missing required parameter 'grant_type'")
        resources = request.form_values("resource")
        if grant_type == "authorization_code":
            body = self._code_grant(request.form, resources)
        elif grant_type == "refresh_token":
            body = self._refresh_grant(request.form, resources)
        else:
            raise OAuthError("unsupported_grant_type", f"unsupported grant_type {grant_type!r}")
        hook = self.token_response_hook
        if hook is not None:
            result = hook(body)
            if isinstance(result, httpx.Response):
                return Reply(result.status_code, list(result.headers.multi_items()), result.read())
            if result is not None:
                body = result
        return json_reply(body, headers=NO_STORE)

    def _authenticate_client(self, request: FakeRequest) -> None:
        """Check client_secret_basic or client_secret_post (exactly one of them)."""
        authorization = request.headers.get("authorization")
        form_id, form_secret = request.form.get("client_id"), request.form.get("client_secret")
        challenge: list[tuple[str, str]] = []
        if authorization is not None:
            if form_secret is not None:
                raise OAuthError(
                    "invalid_request",
                    "client authentication must only be provided using one mechanism",
                )
            client_id, secret = _parse_basic(authorization)
            if form_id is not None and form_id != client_id:
                raise OAuthError("invalid_request", "mismatch in body and authorization client ids")
            challenge = [("www-authenticate", f'Basic realm="{self.issuer}"')]
        elif form_id is not None and form_secret is not None:
            client_id, secret = form_id, form_secret
        else:
            raise OAuthError("invalid_client", "no client authentication mechanism provided", 401)
        if client_id != self.client_id:
            raise OAuthError("invalid_client", "client authentication failed", 401, challenge)
        if not hmac.compare_digest(secret.encode(), self.client_secret.encode()):
            raise OAuthError("invalid_client", "invalid secret provided", 401, challenge)

    def _code_grant(self, form: dict[str, str], resources: tuple[str, ...]) -> dict[str, Any]:
        code_value, redirect_uri = form.get("code"), form.get("redirect_uri")
        if code_value is None or redirect_uri is None:
            raise OAuthError(
                "invalid_request", "missing required parameter 'code' or 'redirect_uri'"
            )
        code = self._codes.get(code_value)
        if code is None:
            raise OAuthError("invalid_grant", "authorization code not found")
        if self.clock() >= code.expires_at:
            raise OAuthError("invalid_grant", "authorization code is expired")
        grant = self._live_grant(code.grant_id)
        verifier = form.get("code_verifier", "")
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if not verifier or not hmac.compare_digest(challenge.encode(), code.code_challenge.encode()):
            raise OAuthError("invalid_grant", "PKCE verification failed")
        if redirect_uri != code.redirect_uri:
            raise OAuthError("invalid_grant", "authorization code redirect_uri mismatch")
        if code.used:
            grant.revoked = True
            raise OAuthError("invalid_grant", "authorization code already consumed")
        code.used = True
        scopes = grant.all_scopes
        target = self._resource_target(grant, resources, scopes, None)  # after consuming the code
        refresh = self._new_refresh_token(grant) if grant.offline else None
        return self._token_body(grant, scopes, nonce=code.nonce, refresh_token=refresh, target=target)

    def _refresh_grant(self, form: dict[str, str], resources: tuple[str, ...]) -> dict[str, Any]:
        value = form.get("refresh_token")
        if value is None:
            raise OAuthError("invalid_request", "missing required parameter 'refresh_token'")
        token = self._refresh_tokens.get(value)
        if token is None:
            raise OAuthError("invalid_grant", "refresh token not found")
        now = self.clock()
        if now >= token.expires_at:
            raise OAuthError("invalid_grant", "refresh token is expired")
        grant = self._live_grant(token.grant_id)
        granted = grant.all_scopes
        requested = tuple(dict.fromkeys(form.get("scope", "").split())) or granted
        missing = [s for s in requested if s not in granted]
        if missing:
            raise OAuthError("invalid_scope", f"refresh token missing requested scope {missing}")
        if token.consumed:
            grant.revoked = True
            raise OAuthError("invalid_grant", "refresh token already used")
        organization_id = form.get("organization_id")
        if organization_id is not None:
            self._check_organization(grant, organization_id)
        mode = self.rotate_refresh_token
        if mode == "always" or (mode == "logto" and token.aged(now, ROTATE_AFTER)):
            token.consumed = True
            value = self._new_refresh_token(grant)
        # Like oidc-provider, the resource is resolved after rotation: an invalid_target
        # answer has already used up a rotated refresh token.
        target: _Target | None
        if organization_id is not None and not resources:
            target = self._organization_target(grant, organization_id, requested)
        else:
            target = self._resource_target(grant, resources, requested, organization_id)
        return self._token_body(grant, requested, nonce=None, refresh_token=value, target=target)

    def _check_organization(self, grant: Grant, organization_id: str) -> None:
        """Logto's organization checks (RFC 0001): membership, then the organizations scope."""
        memberships = self.user_claims(grant.user).get("organizations") or []
        if organization_id not in memberships:
            raise OAuthError("access_denied", "user is not a member of the organization", 403)
        if ORGANIZATIONS_SCOPE not in grant.scopes:
            raise OAuthError("insufficient_scope", "refresh token missing required scope", 403)

    def _resource_target(
        self,
        grant: Grant,
        resources: tuple[str, ...],
        scopes: tuple[str, ...],
        organization_id: str | None,
    ) -> _Target | None:
        """oidc-provider's ``resolveResource`` with Logto's settings (``useGrantedResource``
        false, no default API resource): None means an opaque token for userinfo."""
        if len(resources) > 1:
            return None  # Logto's defaultResource() resolves several values to none
        if resources:
            indicator = resources[0]
        elif "openid" not in scopes and len(grant.resources) == 1:
            indicator = grant.resources[0]  # no openid: the token cannot be for userinfo
        else:
            return None
        if indicator not in grant.resources or self._resource_scopes(indicator) is None:
            raise OAuthError("invalid_target", UNKNOWN_TARGET)
        granted = grant.resource_scopes.get(indicator, ())
        issued = self._grantable(grant.user, indicator, (s for s in granted if s in scopes))
        return _Target(indicator, issued, organization_id)

    def _organization_target(
        self, grant: Grant, organization_id: str, scopes: tuple[str, ...]
    ) -> _Target:
        """A Logto organization token: the requested organization scopes the user has."""
        granted = grant.resource_scopes.get(ORGANIZATION_RESOURCE, ())
        issued = self._grantable(grant.user, ORGANIZATION_RESOURCE, (s for s in granted if s in scopes))
        return _Target(organization_audience(organization_id), issued)

    def _live_grant(self, grant_id: str) -> Grant:
        grant = self._grants.get(grant_id)
        if grant is None or grant.revoked:
            raise OAuthError("invalid_grant", "grant has been revoked")
        return grant

    def _new_refresh_token(self, grant: Grant) -> str:
        value, now = random_token(), self.clock()
        self._refresh_tokens[value] = RefreshToken(
            grant.grant_id, now, now + self.refresh_token_ttl
        )
        return value

    def _token_body(
        self,
        grant: Grant,
        scopes: tuple[str, ...],
        *,
        nonce: str | None,
        refresh_token: str | None,
        target: _Target | None = None,
    ) -> dict[str, Any]:
        """The token response: an opaque access token for userinfo (OIDC scopes only), or a
        JWT for ``target``; an ID token whenever ``openid`` is among ``scopes`` (Logto
        issues one with resource and organization tokens too)."""
        now = self.clock()
        oidc_scopes = tuple(s for s in scopes if s in grant.scopes)
        if target is None:
            access_token = random_token()
            self._access_tokens[access_token] = AccessToken(
                grant.grant_id, oidc_scopes, now + self.access_token_ttl
            )
            scope = " ".join(oidc_scopes)
        else:
            scope = " ".join(target.scopes)
            claims = self.make_access_token_claims(
                grant.user, target.audience, scope=scope, organization_id=target.organization_id
            )
            access_token = self.sign_access_token(claims)
        body: dict[str, Any] = {
            "access_token": access_token,
            "expires_in": self.access_token_ttl,
            "token_type": "Bearer",
            "scope": scope,
        }
        if "openid" in oidc_scopes:
            claims = self._id_token_claims(
                grant.user,
                oidc_scopes,
                grant.auth_time,
                nonce=nonce,
                sid=grant.sid,
                at_hash=_keys.at_hash(access_token),
            )
            body["id_token"] = self.sign_id_token(claims)
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        return body

    def _id_token_claims(
        self,
        user: str,
        scopes: Iterable[str],
        auth_time: int,
        *,
        nonce: str | None = None,
        sid: str | None = None,
        at_hash: str | None = None,
    ) -> dict[str, Any]:
        now = int(self.clock())
        protocol = {
            "iss": self.issuer,
            "aud": self.client_id,
            "exp": now + ID_TOKEN_TTL,
            "iat": now,
            "auth_time": auth_time,
            "nonce": nonce,
            "at_hash": at_hash,
            "sid": sid,
        }
        released = _claims.release(self.user_claims(user), scopes, id_token=True)
        return _claims.merge(released, protocol)

    # ------------------------------------------------------ userinfo & sign-out

    def _userinfo(self, request: FakeRequest) -> Reply:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        presented = value.strip() if scheme.lower() == "bearer" else None
        presented = presented or request.form.get("access_token")
        token = self._access_tokens.get(presented or "")
        grant = self._grants.get(token.grant_id) if token else None
        if token is None or grant is None or grant.revoked or self.clock() >= token.expires_at:
            description = "invalid token provided" if presented else "no access token provided"
            challenge = (
                f'Bearer realm="{self.issuer}", error="invalid_token", '
                f'error_description="{description}"'
            )
            raise OAuthError("invalid_token", description, 401, [("www-authenticate", challenge)])
        if "openid" not in token.scopes:
            raise OAuthError("insufficient_scope", "access token missing 'openid' scope", 403)
        claims = _claims.release(self.user_claims(grant.user), token.scopes, id_token=False)
        return json_reply(claims, headers=NO_STORE)

    def _end_session(self, request: FakeRequest) -> Reply:
        params = request.params
        client_id, hint = params.get("client_id"), params.get("id_token_hint")
        target = params.get("post_logout_redirect_uri")
        sids = {request.cookie(SESSION_COOKIE) or ""}
        if hint is not None:
            claims = _keys.verify(hint, list(self._keys))
            if claims is None:
                return self._error_page("id_token_hint could not be validated")
            audience = claims.get("aud")
            if audience != self.client_id and self.client_id not in (audience or []):
                return self._error_page("id_token_hint was not issued for this client")
            sids.add(str(claims.get("sid", "")))
        if client_id is not None and client_id != self.client_id:
            return self._error_page("unknown client_id")
        if target is not None:
            if hint is None and client_id is None:
                return self._error_page("post_logout_redirect_uri needs id_token_hint or client_id")
            allowed = self.post_logout_redirect_uris
            if allowed is not None and target not in allowed:
                return self._error_page("post_logout_redirect_uri not registered")
        for sid in sids:
            self._end_provider_session(sid)
        cookie = self._session_cookie("", clear=True)
        if target is None:
            return html_reply(pages.signed_out_page(), headers=[cookie])
        return redirect_reply(target, {"state": params.get("state")}, [cookie])

    def _end_provider_session(self, sid: str) -> None:
        """Sign the session out and revoke its grants, except offline ones (like Logto)."""
        session = self._sessions.get(sid)
        if session is None:
            return
        session.active = False
        for grant in self._grants.values():
            if grant.sid == sid and not grant.offline:
                grant.revoked = True

    def _revocation(self, request: FakeRequest) -> Reply:
        if request.duplicates:
            raise OAuthError("invalid_request", "parameters must not be provided twice")
        self._authenticate_client(request)
        value = request.form.get("token")
        if value is None:
            raise OAuthError("invalid_request", "missing required parameter 'token'")
        refresh = self._refresh_tokens.pop(value, None)
        if refresh is not None:
            self._grants[refresh.grant_id].revoked = True
        self._access_tokens.pop(value, None)
        return Reply(200, list(NO_STORE))


def _parse_basic(authorization: str) -> tuple[str, str]:
    """Decode RFC 6749 §2.3.1 Basic credentials (each part form-urlencoded)."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError("invalid_request", "only Basic authorization is supported")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError as error:
        raise OAuthError("invalid_request", "invalid authorization header value format") from error
    client_id, sep, secret = decoded.partition(":")
    if not sep or not client_id:
        raise OAuthError("invalid_request", "invalid authorization header value format")
    return unquote_plus(client_id), unquote_plus(secret)
