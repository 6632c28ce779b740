"""The routes under `base_path`: sign-in, callback, sign-out, and the JSON endpoints."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote, urlencode

from cachetools import TTLCache

from .._messages import Request, Response
from .._protocol.freshness import AuthTimeError, parse_max_age
from .._protocol.oauth import revoke_or_raise, token_grant
from .._protocol.tokens import logout_token_replay_ttl, verify_id_token, verify_logout_token
from .._sessions.authjs import AUTHJS_CSRF_COOKIE, AuthJsCsrfSigner
from .._sessions.cipher import Cipher, Signer, b64encode
from .._sessions.cookies import DuplicateCookie, delete_cookie, set_cookie
from .._sessions.devices import UNKNOWN_BROWSER, DeviceSession, describe_user_agent, device_of, started
from .._sessions.manager import SessionManager
from ..config import LogtoConfig
from ..errors import LogtoError, OAuthError, ProviderError, ProviderUnavailable, TokenValidationError
from ..flow import Flow
from ..session import SessionData, session_claims
from ..stores import ServerSessions
from .pages import ERRORS, error_page, error_status, signout_page
from .redirects import request_origin, safe_redirect
from .usercode import Report, UserCode

__all__ = ["Routes"]

log = logging.getLogger("logto_middleware")

TRANSACTION_COOKIE = "logto.transaction"
CSRF_COOKIE = "logto.csrf-token"
TRANSACTION_MAX_AGE = 15 * 60
# Sign-ins under way at once in one browser (tabs, a double click, a prefetch), each in a cookie
# of its own: starting one more deletes the oldest.
MAX_TRANSACTIONS = 5
# A browser drops a cookie over 4096 bytes (name, value and attributes): a sign-in whose
# transaction would not fit goes back to the default target.
_MAX_TRANSACTION_COOKIE = 3936
# Logto's own sign-in parameters, passed through to the authorization request when given.
PASSTHROUGH = ("direct_sign_in", "first_screen", "login_hint", "identifier", "prompt", "ui_locales")
# The handle of a cookie session in the list of devices: it is the only one there is.
_COOKIE_SESSION_HANDLE = "current"
_MAX_HANDLE = 128
_NEEDS_STORE = ("ending the other sessions needs a server-side session store (AUTH_SESSION_STORE=redis://... "
                "or memory): a session kept in its browser's cookie cannot be ended from the server")


class Routes:
    """Handlers of the routes under `base_path`; each is a flow returning a `Response`."""

    def __init__(self, config: LogtoConfig, manager: SessionManager, user_code: UserCode,
                 report: Report | None = None) -> None:
        self.manager = manager
        self.config = config
        self._user_code = user_code
        self._report = report or (lambda exc, method, path, what: log.error("%s on %s %s: %s", what, method, path,
                                                                           exc))
        self._transactions = Cipher(config.secrets, "transaction cookie")
        if config.session_format == "authjs":
            # Auth.js's own CSRF cookie, so these routes can stand in for an Auth.js app's.
            self._csrf: Signer | AuthJsCsrfSigner = AuthJsCsrfSigner(config.secrets)
            self._csrf_cookie_name = AUTHJS_CSRF_COOKIE
        else:
            self._csrf = Signer(config.secrets, "csrf token")
            self._csrf_cookie_name = CSRF_COOKIE
        # States already redeemed: a replayed callback is refused even with the old cookie.
        # (A transaction lives TRANSACTION_MAX_AGE: a state older than that is refused anyway.)
        self._used_states: TTLCache[str, bool] = TTLCache(100_000, TRANSACTION_MAX_AGE, timer=manager.clock)
        self._used_states_lock = threading.Lock()
        self._table: dict[str, tuple[tuple[str, ...], Callable[[Request], Flow[Response]]]] = {
            "signin": (("GET", "POST"), self.signin),
            "signin/logto": (("GET", "POST"), self.signin),
            "callback/logto": (("GET",), self.callback),
            "signout": (("GET", "POST"), self.signout),
            "session": (("GET",), self.session),
            "csrf": (("GET",), self.csrf),
            "providers": (("GET",), self.providers),
            "error": (("GET",), self.error),
            "backchannel-logout": (("POST",), self.backchannel_logout),
            "sessions": (("GET",), self.sessions),
            "sessions/end": (("POST",), self.end_sessions),
        }

    def base_path(self, root: str) -> str:
        """Where the routes are on the site for an app served under `root` ("" for none):
        `base_path` is within the app, so under the root; a path from `base_url` (`AUTH_URL`) is
        the site's already, unless it does not start with the root (then it is taken as within
        the app, as `AUTH_URL=https://example.com/api/auth` copied from an Auth.js app would be)."""
        base = self.config.base_path
        if not root or (self.config.base_path_from_url and (base == root or base.startswith(root + "/"))):
            return base
        return root + base

    def origin(self, request: Request) -> str:
        return request_origin(request.scheme, request.headers, base_url=self.config.base_url,
                              trust_host=self.config.trust_host, server=request.server)

    def _first_use(self, state: str) -> bool:
        """Remember the callback's `state`; False when it was used before (a replay)."""
        with self._used_states_lock:
            if state in self._used_states:
                return False
            self._used_states[state] = True
            return True

    def dispatch(self, request: Request, route: str) -> Flow[Response]:
        entry = self._table.get(route)
        if entry is None:
            return Response.json({"error": "NotFound"}, 404)
        methods, handler = entry
        if request.method == "HEAD" and "GET" in methods:
            pass
        elif request.method not in methods:
            response = Response.json({"error": "MethodNotAllowed"}, 405)
            response.headers.append(("allow", ", ".join(methods)))
            return response
        return (yield from handler(request))

    # -- helpers -----------------------------------------------------------------------------

    def _url(self, request: Request, route: str) -> str:
        return f"{self.origin(request)}{self.base_path(request.root)}/{route}"

    def _error(self, request: Request, code: str, cookies: Sequence[str] | None = None) -> Response:
        location = self._url(request, "error") + "?" + urlencode({"error": code})
        if request.headers.get("x-auth-return-redirect") and request.method == "POST":
            return Response.json({"url": location}, cookies=cookies)
        return Response.redirect(location, cookies)

    def _bad_request(self, request: Request, code: str) -> Response:
        """A 400 answered at once (nothing was started: no redirect to the error page)."""
        if request.wants_json() or (request.headers.get("x-auth-return-redirect") and request.method == "POST"):
            return Response.json({"error": code}, 400)
        return Response.html(error_page(code, self._default_target(request, self.config.post_login_redirect)), 400)

    def _redirect(self, request: Request, location: str, cookies: Sequence[str] | None = None) -> Response:
        # Auth.js's client posts with this header and expects the target as JSON.
        if request.headers.get("x-auth-return-redirect") and request.method == "POST":
            return Response.json({"url": location}, cookies=cookies)
        return Response.redirect(location, cookies)

    def _default_target(self, request: Request, setting: str | None) -> str:
        # A path from the configuration is the app's: under a prefix, the prefix comes first.
        origin = self.origin(request) + request.root
        if not setting:
            return origin + "/"
        if setting.startswith("/") and not setting.startswith("//"):
            return origin + setting
        return setting  # an absolute URL from the configuration is trusted

    def _same_origin(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is not None:
            return origin.lower() == self.origin(request)
        return request.headers.get("sec-fetch-site") == "same-origin"

    def _csrf_cookie(self, request: Request) -> tuple[str | None, str]:
        """The browser's CSRF token if its cookie is genuine, and the cookie's name."""
        secure = self.manager.is_secure(request)
        name = self.manager.cookie_name(self._csrf_cookie_name, secure, host_only=True)
        try:
            value = request.cookies.only(name) or ""
        except DuplicateCookie:
            log.info("CSRF cookie sent twice (one may be planted); neither is trusted")
            return None, name
        # Auth.js writes this cookie URL-encoded (`token%7Chash`).
        token, _, tag = unquote(value).partition("|")
        if token and tag and self._csrf.verify(token, tag):
            return token, name
        return None, name

    def _ensure_csrf(self, request: Request) -> tuple[str, list[str]]:
        token, name = self._csrf_cookie(request)
        if token is not None:
            return token, []
        token = secrets.token_hex(32)
        secure = self.manager.is_secure(request)
        return token, [set_cookie(name, f"{token}|{self._csrf.sign(token)}", max_age=None, secure=secure)]

    def _csrf_ok(self, request: Request) -> bool:
        if self._same_origin(request):
            return True
        token, _ = self._csrf_cookie(request)
        submitted = request.form.get("csrfToken", "") or request.headers.get("x-csrf-token", "")
        return token is not None and hmac.compare_digest(token.encode(), submitted.encode())

    # -- sign-in -----------------------------------------------------------------------------

    def signin(self, request: Request) -> Flow[Response]:
        if request.method == "POST" and not self._csrf_ok(request):
            return Response.json({"error": "MissingCSRF"}, 403)
        params = {**request.query, **request.form}
        origin = self.origin(request)
        # `next` is Django's name for it (`login_required`, `LOGIN_URL`): an alias, same rules.
        target = safe_redirect(params.get("callbackUrl") or params.get("next"), origin,
                               self._default_target(request, self.config.post_login_redirect))
        # A fresh sign-in (a guard's link): refused when malformed rather than ignored, which
        # would start a sign-in that cannot be checked for recency.
        max_age = parse_max_age(params["max_age"]) if params.get("max_age") else None
        if max_age is None and params.get("max_age"):
            return self._bad_request(request, "InvalidMaxAge")
        try:
            metadata = yield from self.manager.provider.metadata()
        except LogtoError as exc:
            return self._provider_failure(request, exc)
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        redirect_uri = self._url(request, "callback/logto")
        query: list[tuple[str, str]] = [
            ("client_id", self.config.client_id), ("response_type", "code"),
            ("redirect_uri", redirect_uri), ("scope", self.config.scope), ("state", state),
            ("nonce", nonce), ("code_challenge", b64encode(hashlib.sha256(verifier.encode()).digest())),
            ("code_challenge_method", "S256"),
        ]
        extras = {name: params[name] for name in PASSTHROUGH if _clean(params.get(name))}
        if self.config.prompt and "prompt" not in extras:
            extras["prompt"] = self.config.prompt
        query += sorted(extras.items())
        if max_age is not None:
            query.append(("max_age", str(max_age)))
        query += [("resource", resource) for resource in self.config.resources]
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        location = metadata.authorization_endpoint + separator + urlencode(query)
        secure = origin.startswith("https:")
        name = self._transaction_name(state, secure)
        fields = {"state": state, "nonce": nonce, "verifier": verifier, "target": target,
                  "redirect_uri": redirect_uri, "created": int(self.manager.clock())}
        if max_age is not None:
            fields["max_age"] = max_age  # the callback checks the ID token's auth_time against it
        value = self._transactions.encrypt(json.dumps(fields).encode(), name.encode())
        if len(name) + len(value) > _MAX_TRANSACTION_COOKIE:  # a very long callbackUrl
            fields["target"] = self._default_target(request, self.config.post_login_redirect)
            value = self._transactions.encrypt(json.dumps(fields).encode(), name.encode())
        cookies = self._evict_transactions(request, secure)
        cookies.append(set_cookie(name, value, max_age=TRANSACTION_MAX_AGE, secure=secure))
        return self._redirect(request, location, cookies)

    def _transaction_name(self, state: str, secure: bool) -> str:
        """The cookie of the sign-in of `state`: one per sign-in, so sign-ins started in several
        tabs (or twice) do not overwrite each other. The suffix only tells them apart (it is in
        no way secret: the state travels in URLs); the callback's state finds it again."""
        base = self.manager.cookie_name(TRANSACTION_COOKIE, secure, host_only=True)
        return f"{base}.{hashlib.sha256(state.encode()).hexdigest()[:8]}"

    def _evict_transactions(self, request: Request, secure: bool) -> list[str]:
        """Deletions of the oldest transaction cookies (unreadable ones first), leaving room for
        one more under MAX_TRANSACTIONS."""
        prefix = self.manager.cookie_name(TRANSACTION_COOKIE, secure, host_only=True) + "."
        live: list[tuple[int, int, str]] = []
        for index, (name, value) in enumerate(request.cookies.items()):
            if name.startswith(prefix):
                transaction = self._open_transaction(name, value)
                # Within one second, the order of the header: a browser sends cookies of one path
                # oldest first (RFC 6265, 5.4).
                live.append((transaction["created"] if transaction is not None else -1, index, name))
        live.sort()
        excess = max(0, len(live) - MAX_TRANSACTIONS + 1)
        return [delete_cookie(name, secure=secure) for _, _, name in live[:excess]]

    def _provider_failure(self, request: Request, exc: LogtoError, cookies: Sequence[str] | None = None) -> Response:
        if isinstance(exc, ProviderUnavailable):
            log.warning("provider unavailable: %s", exc)
            return self._error(request, "ProviderUnavailable", cookies)
        log.error("provider answered something unexpected: %s", exc)
        return self._error(request, "Configuration", cookies)

    def _read_transaction(self, request: Request, state: str) -> tuple[dict[str, Any] | None, list[str]]:
        """The sign-in transaction of the callback's `state`, and the deletion of its cookie (of
        that cookie only: the other sign-ins under way keep theirs)."""
        if not state:
            return None, []
        secure = self.manager.is_secure(request)
        name = self._transaction_name(state, secure)
        try:
            value = request.cookies.only(name)
        except DuplicateCookie:
            # One may be planted (a sibling host's, or another path's, comes first): the sign-in
            # fails rather than pick one, and our own is cleared.
            log.warning("transaction cookie sent twice (one may be planted); sign-in refused")
            return None, [delete_cookie(name, secure=secure)]
        if value is None:
            return None, []
        return self._open_transaction(name, value), [delete_cookie(name, secure=secure)]

    def _open_transaction(self, name: str, value: str) -> dict[str, Any] | None:
        """The transaction sealed in cookie `name`, or None when it is not ours, or expired."""
        plaintext = self._transactions.decrypt(value, name.encode())
        try:
            transaction = json.loads(plaintext) if plaintext is not None else None
        except ValueError:
            transaction = None
        if not isinstance(transaction, dict) or not all(
                isinstance(transaction.get(k), str) for k in ("state", "nonce", "verifier", "target",
                                                              "redirect_uri")):
            return None
        created = transaction.get("created")
        if not isinstance(created, int) or created + TRANSACTION_MAX_AGE < self.manager.clock():
            return None
        if not isinstance(transaction.get("max_age", 0), int):
            return None
        return transaction

    def callback(self, request: Request) -> Flow[Response]:
        params = request.query
        state = params.get("state", "")
        # An error answer with the state of a sign-in under way ends that sign-in (its cookie is
        # cleared); without a state nothing is cleared: the others go on.
        transaction, cookies = self._read_transaction(request, state)
        if "error" in params:
            error = "AccessDenied" if params["error"] == "access_denied" else "OAuthCallbackError"
            log.info("provider returned an error on the callback: %r", params["error"][:64])
            return self._error(request, error, cookies)
        if transaction is None or not hmac.compare_digest(transaction["state"].encode(), state.encode()):
            log.info("callback without a matching sign-in transaction")
            return self._error(request, "MissingCSRF", cookies)
        if not self._first_use(state):
            log.warning("callback replayed a state that was already used")
            return self._error(request, "MissingCSRF", cookies)
        try:
            metadata = yield from self.manager.provider.metadata()
        except LogtoError as exc:
            return self._provider_failure(request, exc, cookies)
        iss = params.get("iss")
        if (iss is not None and iss != self.config.issuer) or (iss is None and metadata.iss_parameter_supported):
            log.warning("callback iss parameter does not match the issuer (RFC 9207)")
            return self._error(request, "OAuthCallbackError", cookies)
        code = params.get("code")
        if not code:
            return self._error(request, "OAuthCallbackError", cookies)
        config = self.config
        try:
            tokens = yield from token_grant(metadata.token_endpoint, config.client_id, config.client_secret, {
                "grant_type": "authorization_code", "code": code,
                "redirect_uri": transaction["redirect_uri"], "code_verifier": transaction["verifier"]})
            if not tokens.id_token:
                raise ProviderError("token endpoint answered no id_token")
            claims = yield from verify_id_token(
                tokens.id_token, provider=self.manager.provider, issuer=config.issuer,
                client_id=config.client_id, algorithms=config.id_token_algorithms,
                now=self.manager.clock(), leeway=config.clock_skew, nonce=transaction["nonce"],
                access_token=tokens.access_token, trusted_source=True,  # straight from the token endpoint
                max_age=transaction.get("max_age"))
        except OAuthError as exc:
            log.info("code exchange refused: %s", exc.error)
            return self._error(request, "OAuthCallbackError", cookies)
        except AuthTimeError as exc:
            log.warning("sign-in refused: %s", exc)
            return self._error(request, "SignInNotRecent", cookies)
        except TokenValidationError as exc:
            log.warning("ID token rejected: %s", exc)
            return self._error(request, "Verification", cookies)
        except (ProviderUnavailable, ProviderError) as exc:
            return self._provider_failure(request, exc, cookies)
        now = int(self.manager.clock())
        data = self.manager.new_session(
            session_claims(claims),
            id_token=tokens.id_token, access_token=tokens.access_token,
            access_token_expires_at=now + tokens.expires_in if tokens.expires_in is not None else None,
            refresh_token=tokens.refresh_token, scope=tokens.scope or config.scope)
        if self.manager.server_side:  # a cookie session lists only itself: its bytes are not spent on it
            data = started(data, now, request.headers.get("user-agent"))
        user = self._user_code.user(data, request)
        if user is None:
            # The app's profile mapper cannot map this user: no session it could not read later.
            return self._error(request, "Configuration", cookies)
        # The app's hooks: refuse the sign-in, send it elsewhere, or add fields to the session.
        admitted = yield from self._user_code.sign_in(data, user, request, self.origin(request))
        if not isinstance(admitted, SessionData):
            if admitted is None:
                return self._error(request, "AccessDenied", cookies)
            return self._redirect(request, admitted, cookies)
        data = admitted
        state_obj = yield from self.manager.read_session(request, refresh=False)
        if state_obj.cookie_value is not None:
            # A new sign-in always gets a new session id (no session fixation).
            yield from self.manager.sessions.delete(state_obj.cookie_value)
        state_obj.cookie_value = None
        state_obj.data, state_obj.dirty, state_obj.rolled, state_obj.cleared = data, True, True, False
        cookies += yield from self.manager.write_session(state_obj)
        log.info("signed in")
        yield from self._user_code.signed_in(data, request)
        return self._redirect(request, transaction["target"], cookies)

    # -- sign-out ----------------------------------------------------------------------------

    def signout(self, request: Request) -> Flow[Response]:
        if request.method in ("GET", "HEAD"):
            token, cookies = self._ensure_csrf(request)
            return Response.html(signout_page(self._url(request, "signout"), token), cookies=cookies)
        if not self._csrf_ok(request):
            log.info("sign-out refused: cross-origin without a valid CSRF token")
            return Response.json({"error": "MissingCSRF"}, 403)
        state = yield from self.manager.read_session(request, refresh=False)
        data = state.data
        cookies = self.manager.clear_session(state) if state.present else []
        if state.cookie_value is not None:
            yield from self.manager.sessions.delete(state.cookie_value)
        everywhere = (request.form.get("everywhere") or request.query.get("everywhere")) == "1"
        ended = [data] if data is not None else []
        if everywhere and data is not None and isinstance(self.manager.sessions, ServerSessions):
            others = yield from self.manager.sessions.end_user_sessions(str(data.claims.get("sub")))
            ended += others
            log.info("signed out everywhere: %d other sessions ended", len(others))
        origin = self.origin(request)
        target = self._default_target(request, self.config.post_logout_redirect)
        local_target = safe_redirect(request.form.get("callbackUrl") or request.query.get("callbackUrl"),
                                     origin, target)
        if data is None:
            return self._redirect(request, local_target, cookies)
        yield from self._user_code.signed_out(data, request)
        try:
            metadata = yield from self.manager.provider.metadata()
        except LogtoError as exc:
            log.warning("provider unavailable at sign-out; signed out locally only: %s", exc)
            return self._redirect(request, local_target, cookies)
        # Logto's end_session leaves the grants of offline_access alive, and signs no other
        # client out: each ended session's refresh token is revoked, or it would outlive it.
        yield from self._revoke_refresh_tokens(request, ended)
        if not metadata.end_session_endpoint:
            return self._redirect(request, local_target, cookies)
        query: dict[str, str] = {"client_id": self.config.client_id, "post_logout_redirect_uri": target}
        if data.id_token:
            query["id_token_hint"] = data.id_token
        separator = "&" if "?" in metadata.end_session_endpoint else "?"
        log.info("signed out")
        return self._redirect(request, metadata.end_session_endpoint + separator + urlencode(query), cookies)

    # -- back-channel logout (OpenID Connect Back-Channel Logout 1.0) ------------------------

    def backchannel_logout(self, request: Request) -> Flow[Response]:
        sessions = self.manager.sessions
        if not isinstance(sessions, ServerSessions):
            return Response.json({"error": "not_implemented", "error_description":
                                  "back-channel logout needs a server-side session store (memory or redis): "
                                  "a cookie session cannot be ended from the server"}, 501)
        token = request.form.get("logout_token", "")
        try:
            now, leeway = self.manager.clock(), self.config.clock_skew
            claims = yield from verify_logout_token(
                token, provider=self.manager.provider, issuer=self.config.issuer, client_id=self.config.client_id,
                algorithms=self.config.id_token_algorithms, now=now, leeway=leeway)
            # Remembered in the store, so every process refuses a replay, for as long as the
            # token would otherwise pass its checks.
            ttl = logout_token_replay_ttl(claims, now=now, leeway=leeway)
            if (yield from sessions.seen_before("jti:" + claims["jti"], ttl)):
                raise TokenValidationError("logout token replayed")
        except TokenValidationError as exc:
            log.warning("back-channel logout token rejected: %s", exc)
            return Response.json({"error": "invalid_request", "error_description": str(exc)}, 400)
        except (ProviderUnavailable, ProviderError) as exc:
            log.warning("back-channel logout: provider keys unavailable: %s", exc)
            return Response.json({"error": "temporarily_unavailable"}, 503)
        if isinstance(claims.get("sid"), str):
            sub = claims.get("sub")
            count = yield from sessions.delete_logto_session(claims["sid"], sub if isinstance(sub, str) else None)
        else:
            count = yield from sessions.delete_user(str(claims["sub"]))
        log.info("back-channel logout ended %d sessions", count)
        sub, sid = claims.get("sub"), claims.get("sid")
        yield from self._user_code.session_ended_by_provider(
            sub if isinstance(sub, str) else None, sid if isinstance(sid, str) else None, count, request)
        return Response.json({}, 200)

    # -- JSON endpoints ----------------------------------------------------------------------

    def session(self, request: Request) -> Flow[Response]:
        state = yield from self.manager.read_session(request, refresh=True)
        user = self._user_code.session_user(state, request)
        cookies = yield from self.manager.write_session(state)
        if state.data is None or user is None:
            return Response.json(None, cookies=cookies)
        body: dict[str, Any] = {"user": user.to_dict(), "expires": _iso(state.data.expires_at)}
        if state.data.error:
            body["error"] = state.data.error
        body = yield from self._user_code.shape_session(body, user, request)
        return Response.json(body, cookies=cookies)

    # -- a user's devices ----------------------------------------------------------------------

    def sessions(self, request: Request) -> Flow[Response]:
        """The signed-in user's sessions (devices), the current one marked."""
        state = yield from self.manager.read_session(request, refresh=False)
        user = self._user_code.session_user(state, request)
        cookies = yield from self.manager.write_session(state)
        data = state.data
        if data is None or user is None:
            return Response.json({"error": "Unauthorized"}, 401, cookies)
        sessions = self.manager.sessions
        server_side = isinstance(sessions, ServerSessions) and sessions.lists_sessions
        if isinstance(sessions, ServerSessions) and server_side:
            devices = yield from sessions.list_sessions(str(data.claims.get("sub")), state.cookie_value)
        else:
            device = device_of(data, _COOKIE_SESSION_HANDLE, current=True)
            if device.description == UNKNOWN_BROWSER:  # a cookie keeps none: this browser's
                device = replace(device, description=describe_user_agent(request.headers.get("user-agent")))
            devices = [device]
        now = int(self.manager.clock())
        return Response.json({"sessions": [_device_json(device, now) for device in devices],
                              "serverSide": server_side}, cookies=cookies)

    def end_sessions(self, request: Request) -> Flow[Response]:
        """End one of the signed-in user's sessions (`{"session": <id from the list>}`) or all
        the others (`{"others": true}`), and revoke their refresh tokens at the provider."""
        if not self._csrf_ok(request):
            log.info("ending sessions refused: cross-origin without a valid CSRF token")
            return Response.json({"error": "MissingCSRF"}, 403)
        state = yield from self.manager.read_session(request, refresh=False)
        user = self._user_code.session_user(state, request)
        data = state.data
        if data is None or user is None:
            cookies = yield from self.manager.write_session(state)
            return Response.json({"error": "Unauthorized"}, 401, cookies)
        target = _end_target(request)
        if target is None:
            cookies = yield from self.manager.write_session(state)
            return Response.json({"error": "InvalidRequest", "error_description":
                                  'send {"session": "<an id from the list>"} or {"others": true}'}, 400, cookies)
        others, handle = target
        sub = str(data.claims.get("sub"))
        sessions = self.manager.sessions
        listing = isinstance(sessions, ServerSessions) and sessions.lists_sessions
        ended: list[SessionData] = []
        current_ended = False
        if others:
            if not isinstance(sessions, ServerSessions) or not listing:
                cookies = yield from self.manager.write_session(state)
                return Response.json({"error": "ServerSideStoreRequired", "error_description": _NEEDS_STORE},
                                     409, cookies)
            ended = yield from sessions.end_other_sessions(sub, state.cookie_value)
        elif isinstance(sessions, ServerSessions) and listing:
            current_ended = sessions.is_handle_of(handle, state.cookie_value)
            one = yield from sessions.end_session(sub, handle)
            ended = [one] if one is not None else []
        elif hmac.compare_digest(handle.encode(), _COOKIE_SESSION_HANDLE.encode()):
            current_ended, ended = True, [data]
        if not ended:
            cookies = yield from self.manager.write_session(state)
            return Response.json({"error": "NotFound", "error_description": "no session of yours has that id"},
                                 404, cookies)
        if current_ended:
            # The session of this very request: signed out here, as by the sign-out route.
            cookies = self.manager.clear_session(state) if state.present else []
            if state.cookie_value is not None:
                yield from sessions.delete(state.cookie_value)
        else:
            cookies = list((yield from self.manager.write_session(state)))
        log.info("ended %d of the user's sessions", len(ended))
        revoked = yield from self._revoke_refresh_tokens(request, ended)
        return Response.json({"ended": len(ended), "revoked": revoked}, cookies=cookies)

    def _revoke_refresh_tokens(self, request: Request, ended: Sequence[SessionData]) -> Flow[int]:
        """Revoke the refresh tokens of the sessions `ended` (already ended here, whatever the
        provider answers); the number the provider accepted. A failure is reported, never raised."""
        tokens = [data.refresh_token for data in ended if data.refresh_token]
        if not tokens:
            return 0
        what = "refresh token revocation failed (the session was ended here all the same)"
        try:
            metadata = yield from self.manager.provider.metadata()
        except LogtoError as exc:
            self._report(exc, request.method, request.path, what)
            return 0
        if not metadata.revocation_endpoint:
            return 0
        config, revoked = self.config, 0
        for token in tokens:
            try:
                yield from revoke_or_raise(metadata.revocation_endpoint, config.client_id, config.client_secret,
                                           token, "refresh_token")
            except ProviderUnavailable as exc:
                self._report(exc, request.method, request.path, what)
                break  # the others would wait for it in turn
            except ProviderError as exc:
                self._report(exc, request.method, request.path, what)
                continue
            revoked += 1
        return revoked

    def csrf(self, request: Request) -> Flow[Response]:
        token, cookies = self._ensure_csrf(request)
        return Response.json({"csrfToken": token}, cookies=cookies)
        yield

    def providers(self, request: Request) -> Flow[Response]:
        return Response.json({"logto": {
            "id": "logto", "name": "Logto", "type": "oidc",
            "signinUrl": self._url(request, "signin/logto"),
            "callbackUrl": self._url(request, "callback/logto")}})
        yield

    def error(self, request: Request) -> Flow[Response]:
        code = request.query.get("error", "Default")
        home = self._default_target(request, self.config.post_login_redirect)
        if request.wants_json():
            return Response.json({"error": code if code in ERRORS else "Default"}, error_status(code))
        return Response.html(error_page(code, home), error_status(code))
        yield


def _clean(value: str | None) -> bool:
    return bool(value) and len(value or "") <= 256 and all(ord(c) >= 0x20 for c in value or "")


def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _end_target(request: Request) -> tuple[bool, str] | None:
    """What `sessions/end` is asked to end: (True, "") all the others, (False, handle) one, or
    None when the body (JSON, or a form with `session` or `others=1`) says neither clearly."""
    if "json" in request.headers.get("content-type", ""):
        try:
            body = json.loads(request.body)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested beyond the parser
            return None
        if not isinstance(body, dict):
            return None
        handle, others = body.get("session"), body.get("others", False)
    else:
        handle, others = request.form.get("session"), request.form.get("others", "") in ("1", "true")
    if handle is None and others is True:
        return True, ""
    if isinstance(handle, str) and 0 < len(handle) <= _MAX_HANDLE and others is False:
        return False, handle
    return None


def _device_json(device: DeviceSession, now: int) -> dict[str, Any]:
    # The current session is the one in use this very moment.
    last_seen = now if device.current else device.last_seen_at
    return {"id": device.handle, "description": device.description, "current": device.current,
            "created": _iso(device.created_at) if device.created_at is not None else None,
            "lastSeen": _iso(last_seen) if last_seen is not None else None}
