"""Drive the real ``oidc-provider`` interop OP (``provider/server.mjs``) from Python.

The node server is the engine Logto is built on, configured like Logto
(issuer ``http://127.0.0.1:<port>/oidc``, ES384 ID tokens, PKCE S256 required,
refresh tokens only for ``offline_access`` + ``prompt=consent``, rotation on
every use, RFC 9207 ``iss`` in the authorization response).

API resources (RFC 8707, like Logto)
    One API resource, :attr:`OidcProviderProcess.resource_indicator` (default
    ``https://api.interop.test``) with :attr:`~OidcProviderProcess.resource_scopes`
    (default ``read:items write:items``). Send ``resource=<indicator>`` in the
    authorization request (consent grants the requested scopes of it); the code
    exchange without ``resource`` returns an opaque access token for userinfo; a
    ``refresh_token`` grant with ``resource=<indicator>`` returns an ES384 JWT access
    token (``typ: at+jwt``, ``aud`` = the indicator, ``scope`` = the granted scopes of
    it, lifetime ``access_token_ttl``) plus a rotated refresh token and an ID token.
    An unknown indicator is ``invalid_target`` (at the token endpoint only after the
    refresh token was rotated: the presented one is used up).

Login (what :meth:`OidcProviderProcess.login` automates)
    1. ``GET`` the authorization URL -> ``303`` to ``/oidc/auth?...`` (if it
       was the RP's URL) -> ``303`` to ``/interaction/<uid>`` (sets the
       ``op_interaction`` / ``op_interaction_resume`` cookies).
    2. ``GET /interaction/<uid>`` -> ``200`` HTML with ``<form id="login"
       method="post" action="/interaction/<uid>/login">`` and one text field
       ``login``.
    3. ``POST /interaction/<uid>/login`` with ``login=<user name>`` -> ``303``
       to ``/oidc/auth/<uid>`` -> ``303`` to ``<redirect_uri>?code=..&state=..
       &iss=..``. Consent for every requested scope (``offline_access``
       included) is granted automatically, so that is the only form.
       When a provider session already exists and only consent is pending
       (e.g. a second ``prompt=consent`` request) step 2 answers ``303``
       straight away and there is no form at all.

Logout (what :meth:`OidcProviderProcess.logout` automates)
    1. ``GET /oidc/session/end?client_id=..|id_token_hint=..
       &post_logout_redirect_uri=..&state=..`` -> ``200`` HTML with
       ``<form id="op.logoutForm" method="post"
       action="<issuer>/session/end/confirm">`` whose hidden inputs are
       ``xsrf=<per-session secret>`` and ``logout=yes``. (Without a provider
       session cookie the page is an auto-submitting form with the same two
       inputs.)
    2. ``POST`` those inputs (form-urlencoded) to the action with the
       provider's cookies -> ``303`` to ``post_logout_redirect_uri?state=..``
       (or to ``<issuer>/session/end/success``). ``logout=yes`` ends the whole
       provider session and revokes the client's grant (so its refresh tokens
       die). If the client has a ``backchannel_logout_uri`` the provider POSTs a
       ``logout_token`` to it *before* answering.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

PROVIDER_DIR = Path(__file__).resolve().parent / "provider"
SERVER_SCRIPT = PROVIDER_DIR / "server.mjs"

DEFAULT_CLIENT_ID = "interop-client"
# '#' and ':' on purpose: client_secret_basic must form-urlencode before base64.
DEFAULT_CLIENT_SECRET = "s3cr#t:with:colons"
DEFAULT_USERNAME = "alice"
DEFAULT_RESOURCE_INDICATOR = "https://api.interop.test"
DEFAULT_RESOURCE_SCOPES = ("read:items", "write:items")


class ProviderUnavailable(RuntimeError):
    """node / npm (or the installed packages) are not available on this machine."""


class ProviderStartError(RuntimeError):
    """The node server did not come up; the message carries its stderr."""


class InteractionError(RuntimeError):
    """The provider's pages did not behave as the automated login/logout expects."""


# ---------------------------------------------------------------------------
# node / npm


def node_executable() -> str:
    node = shutil.which("node")
    if not node:
        raise ProviderUnavailable("`node` was not found on PATH (Node.js >= 20 is needed)")
    return node


def ensure_node_modules(
    directory: Path = PROVIDER_DIR, packages: tuple[str, ...] = ("oidc-provider",), timeout: float = 300.0
) -> None:
    """Run ``npm ci`` (exactly the lockfile) in ``directory`` unless its ``packages`` are installed."""
    if all((directory / "node_modules" / package / "package.json").is_file() for package in packages):
        return
    npm = shutil.which("npm")
    if not npm:
        raise ProviderUnavailable(
            f"`npm` was not found on PATH; install Node.js >= 20 (with npm) or run `npm ci` in {directory} yourself"
        )
    try:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProviderUnavailable(f"`npm ci` in {directory} timed out after {timeout}s") from exc
    if done.returncode != 0:
        raise ProviderUnavailable(
            f"`npm ci` in {directory} failed with exit code {done.returncode}:\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )


def stop_process(proc: subprocess.Popen[str]) -> None:
    """Terminate a child process, killing it if it does not stop within 5 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------
# HTML forms


class _Form:
    def __init__(self, attrs: Mapping[str, str | None]) -> None:
        self.id = attrs.get("id") or ""
        self.action = attrs.get("action") or ""
        self.method = (attrs.get("method") or "get").upper()
        self.fields: dict[str, str] = {}
        self.field_types: dict[str, str] = {}


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self._current: _Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self._current = _Form(attributes)
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None:
            name = attributes.get("name")
            if name:
                self._current.fields[name] = attributes.get("value") or ""
                self._current.field_types[name] = (attributes.get("type") or "text").lower()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def parse_forms(html: str) -> list[_Form]:
    parser = _FormParser()
    parser.feed(html)
    parser.close()
    return parser.forms


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _snippet(response: httpx.Response) -> str:
    text = response.text
    return text if len(text) <= 800 else text[:800] + "..."


# ---------------------------------------------------------------------------
# the process


class OidcProviderProcess:
    """One ``node server.mjs`` process with a single confidential client."""

    def __init__(
        self,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.port: int | None = None
        self.issuer: str = ""
        self.base_url: str = ""
        self.redirect_uris: list[str] = []
        self.post_logout_redirect_uris: list[str] = []
        self.backchannel_logout_uri: str | None = None
        self.access_token_ttl: int = 60
        self.resource_indicator: str = DEFAULT_RESOURCE_INDICATOR
        self.resource_scopes: tuple[str, ...] = DEFAULT_RESOURCE_SCOPES
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: list[str] = []
        self._stdout: list[str] = []
        self._ready = threading.Event()
        self._discovery: dict[str, Any] | None = None

    # -- lifecycle ----------------------------------------------------------

    def start(
        self,
        redirect_uris: Iterable[str],
        post_logout_redirect_uris: Iterable[str] = (),
        access_token_ttl: int = 60,
        backchannel_logout_uri: str | None = None,
        timeout: float = 30.0,
        resource_indicator: str = DEFAULT_RESOURCE_INDICATOR,
        resource_scopes: Iterable[str] = DEFAULT_RESOURCE_SCOPES,
    ) -> OidcProviderProcess:
        """Start the server; ``resource_indicator`` / ``resource_scopes`` configure its one
        API resource (see the module docstring)."""
        if self._proc is not None:
            raise RuntimeError("provider already started")
        if isinstance(resource_scopes, str):
            resource_scopes = resource_scopes.replace(",", " ").split()
        self.resource_indicator = resource_indicator
        self.resource_scopes = tuple(dict.fromkeys(resource_scopes))
        if not self.resource_scopes:
            raise ValueError("the API resource needs at least one scope")
        self.redirect_uris = list(redirect_uris)
        self.post_logout_redirect_uris = list(post_logout_redirect_uris)
        self.access_token_ttl = int(access_token_ttl)
        self.backchannel_logout_uri = backchannel_logout_uri
        if not self.redirect_uris:
            raise ValueError("at least one redirect URI is needed")
        node = node_executable()
        ensure_node_modules()

        last_error: ProviderStartError | None = None
        for _attempt in range(3):  # a reserved port can be raced away; retry
            try:
                self._spawn(node, free_loopback_port(), timeout)
                return self
            except ProviderStartError as exc:
                last_error = exc
                if "failed to listen" not in str(exc):
                    break
        assert last_error is not None
        raise last_error

    def _spawn(self, node: str, port: int, timeout: float) -> None:
        env = dict(os.environ)
        env.update(
            PORT=str(port),
            CLIENT_ID=self.client_id,
            CLIENT_SECRET=self.client_secret,
            REDIRECT_URIS=",".join(self.redirect_uris),
            POST_LOGOUT_REDIRECT_URIS=",".join(self.post_logout_redirect_uris),
            ACCESS_TOKEN_TTL=str(self.access_token_ttl),
            RESOURCE_INDICATOR=self.resource_indicator,
            RESOURCE_SCOPES=" ".join(self.resource_scopes),
        )
        env.pop("BACKCHANNEL_LOGOUT_URI", None)
        if self.backchannel_logout_uri:
            env["BACKCHANNEL_LOGOUT_URI"] = self.backchannel_logout_uri
        env.setdefault("NODE_ENV", "test")

        self._stderr = []
        self._stdout = []
        self._ready.clear()
        proc = subprocess.Popen(
            [node, str(SERVER_SCRIPT)],
            cwd=PROVIDER_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._proc = proc
        atexit.register(self._terminate)  # never leave a node process behind
        threading.Thread(target=self._pump_stdout, args=(proc,), daemon=True).start()
        threading.Thread(target=self._pump_stderr, args=(proc,), daemon=True).start()

        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                reason = (
                    f"exited with code {proc.returncode}"
                    if proc.poll() is not None
                    else f"did not print READY within {timeout:.0f}s"
                )
                self._terminate()
                time.sleep(0.05)  # let the pump threads drain
                raise ProviderStartError(f"oidc-provider interop server {reason}; stderr:\n{self.stderr}")
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        expected = f"{self.base_url}/oidc"
        if self.issuer != expected:
            self._terminate()
            raise ProviderStartError(f"server announced issuer {self.issuer!r}, expected {expected!r}")
        health = httpx.get(f"{self.base_url}/__health", timeout=5.0)
        if health.status_code != 200:
            self._terminate()
            raise ProviderStartError(f"/__health answered {health.status_code}; stderr:\n{self.stderr}")

    def _pump_stdout(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._stdout.append(line)
            if not self._ready.is_set() and line.startswith("READY "):
                self.issuer = line.split(" ", 1)[1].strip()
                self._ready.set()

    def _pump_stderr(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self._stderr.append(line)

    @property
    def stdout(self) -> str:
        return "".join(self._stdout)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc)

    def stop(self) -> None:
        self._terminate()

    def __enter__(self) -> OidcProviderProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- endpoints ----------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        if self._discovery is None:
            response = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=5.0)
            response.raise_for_status()
            self._discovery = response.json()
        return self._discovery

    @property
    def authorization_endpoint(self) -> str:
        return str(self.discovery()["authorization_endpoint"])

    @property
    def token_endpoint(self) -> str:
        return str(self.discovery()["token_endpoint"])

    @property
    def end_session_endpoint(self) -> str:
        return str(self.discovery()["end_session_endpoint"])

    @property
    def revocation_endpoint(self) -> str:
        return str(self.discovery()["revocation_endpoint"])

    @property
    def userinfo_endpoint(self) -> str:
        return str(self.discovery()["userinfo_endpoint"])

    @property
    def jwks_uri(self) -> str:
        return str(self.discovery()["jwks_uri"])

    # -- test controls ------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.base_url}/__stats", timeout=5.0)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def reset_stats(self) -> None:
        httpx.post(f"{self.base_url}/__stats/reset", timeout=5.0).raise_for_status()

    def rotate_keys(self, drop_old: bool = False) -> str:
        """Rotate the signing key: a new ES384 key is published first and signs every token from
        now on; the previous keys stay in the JWKS unless ``drop_old``. Returns the new kid."""
        response = httpx.post(f"{self.base_url}/__rotate_keys", params={"drop_old": "1"} if drop_old else {},
                              timeout=5.0)
        response.raise_for_status()
        kid: str = response.json()["kid"]
        return kid

    def trigger_backchannel_logout(self, sub: str, sid: str | None = None) -> httpx.Response:
        """Make the provider POST a logout_token to the client's backchannel_logout_uri.

        ``sid`` defaults to the last session id the provider issued to ``sub``.
        200 = the RP answered 200/204; 502 = the RP answered something else
        (JSON body carries ``rp_status``); 409 = no backchannel_logout_uri / sid.
        """
        params = {"sub": sub}
        if sid:
            params["sid"] = sid
        return httpx.post(f"{self.base_url}/__backchannel_logout", params=params, timeout=15.0)

    # -- automated user -----------------------------------------------------

    def login(
        self,
        http_client: httpx.Client,
        authorize_url: str,
        username: str = DEFAULT_USERNAME,
        max_steps: int = 15,
    ) -> str:
        """Sign in as ``username`` and return the URL the provider sends back to the RP.

        ``authorize_url`` is the provider authorization URL (or an RP URL that
        redirects to it). ``http_client`` keeps the provider's cookies. The RP
        callback URL is returned *without* being requested (it carries
        ``code``, ``state`` and ``iss`` — or ``error``).
        """
        provider_origin = _origin(self.base_url)
        url, method, data = authorize_url, "GET", None
        visited_provider = False
        for _ in range(max_steps):
            if _origin(url) == provider_origin:
                visited_provider = True
            response = http_client.request(method, url, data=data, follow_redirects=False)
            if response.is_redirect:
                target = urljoin(str(response.url), response.headers["location"])
                if visited_provider and _origin(target) != provider_origin:
                    return target
                url, method, data = target, "GET", None
                continue
            if _origin(url) == provider_origin and response.status_code in (200, 400):
                login_form = next(
                    (form for form in parse_forms(response.text) if "login" in form.fields),
                    None,
                )
                if login_form is not None and response.status_code == 200:
                    fields = {
                        name: value
                        for name, value in login_form.fields.items()
                        if login_form.field_types.get(name) == "hidden"
                    }
                    fields["login"] = username
                    url = urljoin(str(response.url), login_form.action)
                    method, data = login_form.method, fields
                    continue
            raise InteractionError(
                f"unexpected {response.status_code} from {method} {url} during login:\n{_snippet(response)}"
            )
        raise InteractionError(f"login did not return to the relying party within {max_steps} steps")

    def logout(self, http_client: httpx.Client, end_session_url: str, max_steps: int = 6) -> str:
        """Confirm RP-initiated logout and return where the provider sends the browser.

        ``end_session_url`` is the provider end-session URL (or an RP URL that
        redirects to it). Returns the ``post_logout_redirect_uri`` (with
        ``state``) or the provider's own success page URL, without following it.
        """
        provider_origin = _origin(self.base_url)
        url, method, data = end_session_url, "GET", None
        visited_provider = False
        confirmed = False
        for _ in range(max_steps):
            if _origin(url) == provider_origin:
                visited_provider = True
            response = http_client.request(method, url, data=data, follow_redirects=False)
            if response.is_redirect:
                target = urljoin(str(response.url), response.headers["location"])
                if confirmed or (visited_provider and _origin(target) != provider_origin):
                    return target
                url, method, data = target, "GET", None
                continue
            if response.status_code == 200 and _origin(url) == provider_origin and not confirmed:
                form = next(
                    (f for f in parse_forms(response.text) if f.action.endswith("/session/end/confirm")),
                    None,
                )
                if form is not None:
                    fields = dict(form.fields)
                    fields["logout"] = "yes"
                    url = urljoin(str(response.url), form.action)
                    method, data = "POST", fields
                    confirmed = True
                    continue
            raise InteractionError(
                f"unexpected {response.status_code} from {method} {url} during logout:\n{_snippet(response)}"
            )
        raise InteractionError(f"logout did not finish within {max_steps} steps")

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<OidcProviderProcess {self.issuer or '-'} {state}>"


def stats_json(process: OidcProviderProcess) -> str:
    """Pretty stats, handy in assertion messages."""
    return json.dumps(process.stats(), indent=2, sort_keys=True)
