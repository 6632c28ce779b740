"""What the Starlette and the Flask example share: settings from the environment, the JSON of
`/api/me` and of the example API, and the HTML pages (plain HTML and a little CSS, no build step).

Both apps add this folder to `sys.path` and `import common`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from types import FrameType
from typing import Any

from logto_middleware import AccessTokenUser, AnonymousUser, LogtoConfig, LogtoUser, Session, signin_url, signout_form
from logto_middleware.config import DEFAULT_SCOPES

__all__ = [
    "API_PATH",
    "API_PREFIX",
    "API_SCOPE",
    "NO_STORE",
    "ORGANIZATIONS_SCOPE",
    "SETUP_HINT",
    "UNAUTHORIZED",
    "ApiDemo",
    "ExampleApi",
    "api_demo_page",
    "configure_logging",
    "devices_page",
    "example_api",
    "exit_quietly",
    "home_page",
    "items_payload",
    "listen_address",
    "load_config",
    "load_dotenv_file",
    "me_payload",
    "profile_page",
    "public_url",
    "serve",
    "signin_redirect",
    "userinfo_scopes_granted",
]

AUTH_BASE = "/api/auth"
UNAUTHORIZED: dict[str, str] = {"error": "unauthorized"}
# Pages and JSON that show who is signed in must never be cached by a browser or a proxy.
NO_STORE: dict[str, str] = {"Cache-Control": "no-store"}
SETUP_HINT = (
    "Set AUTH_LOGTO_ISSUER, AUTH_LOGTO_ID, AUTH_LOGTO_SECRET and AUTH_SECRET (in the environment or in a .env "
    "file in the current directory), or run `make demo` to try it with a local development provider."
)
# (direct_sign_in value, label, CSS class) of the social sign-in buttons.
SOCIAL_CONNECTORS = (
    ("social:wechat", "WeChat", "wechat"),
    ("social:huggingface", "Hugging Face", "huggingface"),
)

# The example API: one endpoint, for access tokens of its API resource with this scope.
API_PREFIX = "/example-api"
API_PATH = API_PREFIX + "/items"
API_SCOPE = "read:items"
# Logto scopes whose claims come from the userinfo endpoint (`fetch_user_info()`).
ORGANIZATIONS_SCOPE = "urn:logto:scope:organizations"
USERINFO_SCOPES = ("custom_data", "identities", ORGANIZATIONS_SCOPE)
ITEMS: tuple[dict[str, Any], ...] = (
    {"id": 1, "name": "Notebook", "price": 4.5},
    {"id": 2, "name": "Fountain pen", "price": 27.0},
    {"id": 3, "name": "Ink, blue", "price": 6.25},
)


# -- configuration ---------------------------------------------------------------------------


def load_dotenv_file(path: Path | None = None) -> bool:
    """Load `.env` from the current directory into `os.environ` (variables already set win).

    python-dotenv is optional: without it the environment alone is used.
    """
    dotenv_path = path if path is not None else Path.cwd() / ".env"
    if not dotenv_path.is_file():
        return False
    try:
        from dotenv import load_dotenv
    except ImportError:
        return False
    return load_dotenv(dotenv_path, override=False)


def load_config(environ: Mapping[str, str] | None = None, **overrides: Any) -> LogtoConfig:
    """`LogtoConfig.from_env()` (which reads `AUTH_LOGTO_RESOURCES` too), plus the examples' own
    optional settings:

    - `AUTH_REFRESH_LEEWAY`: seconds before expiry at which the access token is refreshed;
    - `AUTH_LOGTO_SCOPES`: the scopes to ask for (space or comma separated), e.g. to add
      `custom_data identities urn:logto:scope:organizations`; by default the middleware's, plus
      `read:items` when an API resource is configured;
    - `EXAMPLE_API_RESOURCE`: the API resource indicator of the example API (by default the first
      of `AUTH_LOGTO_RESOURCES`); added to the resources the sign-in asks for.

    Reading the process environment also reads `.env` first.
    """
    if environ is None:
        load_dotenv_file()
        environ = os.environ
    leeway = environ.get("AUTH_REFRESH_LEEWAY", "").strip()
    if leeway and "refresh_leeway" not in overrides:
        if not leeway.isdigit():
            raise ValueError(f"AUTH_REFRESH_LEEWAY must be a whole number of seconds, not {leeway!r}")
        overrides["refresh_leeway"] = int(leeway)
    resources = [r.strip() for r in environ.get("AUTH_LOGTO_RESOURCES", "").split(",") if r.strip()]
    api_resource = environ.get("EXAMPLE_API_RESOURCE", "").strip()
    if api_resource and api_resource not in resources and "resources" not in overrides:
        overrides["resources"] = [*resources, api_resource]
    if "scopes" not in overrides:
        scopes = environ.get("AUTH_LOGTO_SCOPES", "").replace(",", " ").split()
        if scopes:
            overrides["scopes"] = scopes
        elif resources or api_resource:
            overrides["scopes"] = [*DEFAULT_SCOPES, API_SCOPE]
    return LogtoConfig.from_env(environ, **overrides)


@dataclass(frozen=True)
class ExampleApi:
    """The example API served by the app itself: which access tokens it accepts, and where the
    app reaches it over HTTP."""

    resource: str  # the API resource indicator: the `aud` of the tokens it accepts
    base_url: str  # e.g. http://127.0.0.1:3000, the app's own listening address
    leeway: int = 60  # seconds of clock skew allowed on `exp`, `iat` and `nbf`

    @property
    def items_url(self) -> str:
        return self.base_url + API_PATH


def example_api(config: LogtoConfig, environ: Mapping[str, str] | None = None,
                base_url: str | None = None) -> ExampleApi | None:
    """The example API's settings; None when no API resource is configured.

    `EXAMPLE_API_URL` is where the app calls its own API (default: its listening address,
    HOST and PORT, never the request's Host header: the access token must not be sent to
    wherever a request claims to come from). `EXAMPLE_API_LEEWAY` is the clock skew in
    seconds the API allows (default 60).
    """
    env = os.environ if environ is None else environ
    resource = env.get("EXAMPLE_API_RESOURCE", "").strip() or (config.resources[0] if config.resources else "")
    if not resource:
        return None
    if base_url is None:
        base_url = env.get("EXAMPLE_API_URL", "").strip()
    if not base_url:
        host, port = listen_address(env)
        base_url = f"http://{_loopback(host)}:{port}"
    raw_leeway = env.get("EXAMPLE_API_LEEWAY", "").strip() or "60"
    if not raw_leeway.isdigit():
        raise ValueError(f"EXAMPLE_API_LEEWAY must be a whole number of seconds, not {raw_leeway!r}")
    return ExampleApi(resource=resource, base_url=base_url.rstrip("/"), leeway=int(raw_leeway))


def _loopback(host: str) -> str:
    """A listening address as something to connect to: a wildcard becomes loopback."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def listen_address(environ: Mapping[str, str] | None = None) -> tuple[str, int]:
    """HOST and PORT from the environment; 127.0.0.1:3000 by default."""
    env = os.environ if environ is None else environ
    host = env.get("HOST", "").strip() or "127.0.0.1"
    raw_port = env.get("PORT", "").strip() or "3000"
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise ValueError(f"PORT must be a port number, not {raw_port!r}")
    return host, int(raw_port)


def configure_logging() -> None:
    """Show the middleware's INFO lines ("signed in", "signed out", refresh problems)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request to the provider


def exit_quietly(signum: int, frame: FrameType | None) -> None:
    """A SIGTERM handler: leave like after Ctrl-C, with exit status 0 and no traceback."""
    raise SystemExit(0)


def serve(run: Callable[[], object], banner: str) -> None:
    """Print `banner` and run the server until Ctrl-C or SIGTERM, both ending it with exit status
    0 and no traceback."""
    signal.signal(signal.SIGTERM, exit_quietly)
    print(banner, flush=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run()
    finally:
        # The server has stopped and the process is leaving. A SIGTERM now (`make demo` stopping
        # a child that Ctrl-C already stopped) has nothing to interrupt: raised while the
        # interpreter waits for its threads, SystemExit would print a traceback.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def public_url(host: str, port: int) -> str:
    """The URL to open in a browser; loopback and wildcard addresses read better as `localhost`."""
    if host in ("127.0.0.1", "::1", "0.0.0.0", "::", "localhost"):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


# -- URLs and JSON -----------------------------------------------------------------------------


def signin_redirect(path: str, query: str = "", *, root: str = "") -> str:
    """Where a protected page sends an anonymous visitor: sign in, then back to the page (`path`:
    the full path, prefix included; `root`: the prefix the app is served under)."""
    return signin_url(f"{path}?{query}" if query else path, base_path=root + AUTH_BASE)


def _iso(timestamp: int | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def me_payload(user: LogtoUser, session: Session) -> dict[str, Any]:
    """What `/api/me` answers a signed-in user. Never the tokens themselves."""
    return {
        "user": user.to_dict(),
        "expires": _iso(session.expires_at),
        "has_access_token": bool(session.access_token),
        "access_token_expires": _iso(session.access_token_expires_at),
        "scopes": [scope for scope in session.scopes if scope != "authenticated"],
        "error": session.error,
        "auth_time": session.auth_time,  # when the user last signed in at Logto, if it said
    }


def items_payload(caller: AccessTokenUser) -> dict[str, Any]:
    """What the example API answers a caller whose access token it accepted."""
    return {
        "items": [dict(item) for item in ITEMS],
        "caller": {"sub": caller.id, "client_id": caller.client_id, "scopes": caller.scopes,
                   "organization_id": caller.organization_id},
    }


def userinfo_scopes_granted(session: Session) -> list[str]:
    """The granted scopes whose claims only userinfo has (organizations, custom data, identities)."""
    return [scope for scope in USERINFO_SCOPES if scope in session.scopes]


@dataclass
class ApiDemo:
    """What `/api-demo` found out, filled in by each app (async in Starlette, plain in Flask)."""

    api: ExampleApi | None
    token_claims: dict[str, Any] | None = None  # decoded for display; the token itself is never shown
    token_error: str | None = None
    status: int | None = None  # the example API's answer
    body: Any = None
    call_error: str | None = None
    userinfo_scopes: list[str] = field(default_factory=list)
    userinfo: dict[str, Any] | None = None
    userinfo_error: str | None = None
    selected_organization: str | None = None
    organization_claims: dict[str, Any] | None = None
    organization_error: str | None = None

    @property
    def organizations(self) -> list[str]:
        """The ids of the user's organizations, from userinfo."""
        found = (self.userinfo or {}).get("organizations")
        return [org for org in found if isinstance(org, str)] if isinstance(found, list) else []

    def record_answer(self, status: int, text: str) -> None:
        self.status = status
        try:
            self.body = json.loads(text)
        except ValueError:
            self.body = text[:2000]


# -- HTML --------------------------------------------------------------------------------------

_CSS = """
:root{--brand:#5d34f2;--brand-dark:#4524c9;--ink:#1f1d2b;--muted:#6b6880;--line:#e6e4ef;--bg:#f6f5fb}
*{box-sizing:border-box}
[hidden]{display:none!important}
body{margin:0;font:16px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);
background:radial-gradient(circle at 20% -10%,#e9e3ff 0,transparent 45%),var(--bg);min-height:100vh}
a{color:var(--brand)}
.topbar{display:flex;align-items:center;gap:1.5rem;padding:.9rem 1.5rem;background:#fff;
border-bottom:1px solid var(--line)}
.brand{font-weight:700;color:var(--ink);text-decoration:none;display:flex;align-items:center;gap:.5rem}
.brand .logo{width:1.6rem;height:1.6rem;border-radius:.45rem;background:var(--brand);color:#fff;
display:grid;place-items:center;font-size:.9rem}
.topbar nav{display:flex;gap:1rem;flex:1}
.topbar nav a{color:var(--muted);text-decoration:none}
.topbar nav a:hover{color:var(--ink)}
.status{font-size:.8rem;padding:.2rem .65rem;border-radius:99px;background:#eeedf3;color:var(--muted)}
.status[data-state=in]{background:#e3f7ea;color:#17663a}
.status[data-state=out]{background:#fdeeee;color:#a3262a}
main{max-width:34rem;margin:3.5rem auto;padding:0 1rem}
.card{background:#fff;border:1px solid var(--line);border-radius:1rem;padding:2rem;
box-shadow:0 10px 30px rgba(54,38,128,.07)}
h1{font-size:1.6rem;margin:.2rem 0 .4rem}
h2{font-size:1rem;margin:1.8rem 0 .6rem;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
.lead{color:var(--muted);margin:0 0 1.5rem}
.stack{display:flex;flex-direction:column;gap:.7rem}
.button{display:flex;align-items:center;justify-content:center;gap:.6rem;width:100%;padding:.75rem 1rem;
font:inherit;font-weight:600;border-radius:.65rem;border:1px solid var(--line);background:#fff;color:var(--ink);
text-decoration:none;cursor:pointer}
.button:hover{border-color:#c9c4e0}
.button.primary{background:var(--brand);border-color:var(--brand);color:#fff}
.button.primary:hover{background:var(--brand-dark)}
.signout button{display:flex;align-items:center;justify-content:center;width:100%;padding:.75rem 1rem;
font:inherit;font-weight:600;border-radius:.65rem;border:1px solid var(--line);background:#fff;color:var(--ink);
cursor:pointer}
.signout button:hover{border-color:#c9c4e0}
.button .mark{width:1.3rem;height:1.3rem;border-radius:50%;display:grid;place-items:center;font-size:.7rem;
color:#fff}
.wechat .mark{background:#07c160}
.huggingface .mark{background:#ffb000;color:#3a2a00}
.divider{display:flex;align-items:center;gap:.8rem;color:var(--muted);font-size:.85rem}
.divider:before,.divider:after{content:"";flex:1;height:1px;background:var(--line)}
.person{display:flex;align-items:center;gap:1.1rem;margin-bottom:1.5rem}
.person .email{color:var(--muted)}
.avatar{position:relative;flex:none;width:4.5rem;height:4.5rem;border-radius:50%;overflow:hidden;display:grid;
place-items:center;background:linear-gradient(135deg,#8d6bff,var(--brand));color:#fff;font-size:1.6rem;
font-weight:700}
.avatar img{position:absolute;inset:0;width:100%;height:100%;object-fit:cover}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:.4rem 1.2rem;margin:0}
.facts dt{color:var(--muted)}
.facts dd{margin:0;overflow-wrap:anywhere}
table{width:100%;border-collapse:collapse;font-size:.9rem}
td{padding:.45rem .3rem;border-top:1px solid var(--line);vertical-align:top;overflow-wrap:anywhere}
td:first-child{color:var(--muted);white-space:nowrap;width:1%;padding-right:1.2rem}
code{font:.85em ui-monospace,SFMono-Regular,Menlo,monospace}
pre{font:.8rem/1.45 ui-monospace,SFMono-Regular,Menlo,monospace;background:var(--bg);border:1px solid var(--line);
border-radius:.5rem;padding:.8rem;overflow:auto;max-height:20rem;margin:0}
.badge{display:inline-block;font-weight:700;padding:.1rem .55rem;border-radius:99px;background:#e3f7ea;color:#17663a}
.badge.bad{background:#fdeeee;color:#a3262a}
.notice{background:#fff8e6;border:1px solid #f3dfa6;border-radius:.5rem;padding:.7rem .9rem;margin:0 0 1rem}
.switcher{display:flex;gap:.6rem;align-items:center}
.switcher select{flex:1;font:inherit;padding:.45rem;border-radius:.5rem;border:1px solid var(--line)}
.switcher button{font:inherit;font-weight:600;padding:.45rem .9rem;border-radius:.5rem;border:1px solid var(--brand);
background:var(--brand);color:#fff;cursor:pointer}
form{margin:0}
button.end{font:inherit;font-weight:600;padding:.3rem .8rem;border-radius:.5rem;border:1px solid var(--line);
background:#fff;color:#a3262a;cursor:pointer}
footer{text-align:center;color:var(--muted);font-size:.85rem;margin:2rem 0}
"""

# Asks the middleware whether this browser is signed in (Auth.js's `isAuthenticated()` pattern)
# and adds the CSRF token to the sign-out forms. A same-origin form POST carries an Origin
# header, which the middleware accepts on its own; the token makes it work without one too.
_SCRIPT = """
(async () => {
  const base = document.body.dataset.authBase;  // the app may be served under a prefix
  const status = document.getElementById("session-status");
  try {
    const response = await fetch(`${base}/session`, {headers: {accept: "application/json"}});
    const session = response.ok ? await response.json() : null;
    const signedIn = Boolean(session && session.user);
    status.textContent = signedIn ? "signed in" : "signed out";
    status.dataset.state = signedIn ? "in" : "out";
  } catch (error) {
    status.textContent = "session unknown";
  }
  const forms = document.querySelectorAll("form[action$='/signout']");
  if (forms.length) {
    const response = await fetch(`${base}/csrf`, {headers: {accept: "application/json"}});
    const {csrfToken} = await response.json();
    forms.forEach((form) => {
      let field = form.querySelector("input[name=csrfToken]");
      if (!field) {
        field = Object.assign(document.createElement("input"), {type: "hidden", name: "csrfToken"});
        form.prepend(field);
      }
      field.value = csrfToken;
    });
  }
})();
"""


def _layout(title: str, framework: str, content: str, root: str, script: str = "") -> str:
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{escape(title)} · Logto + {escape(framework)}</title><style>{_CSS}</style></head>"
        f"<body data-auth-base=\"{escape(root + AUTH_BASE)}\">"
        "<header class=\"topbar\">"
        f"<a class=\"brand\" href=\"{escape(root)}/\"><span class=\"logo\">L</span>Logto + {escape(framework)}</a>"
        f"<nav><a href=\"{escape(root)}/\">Home</a><a href=\"{escape(root)}/profile\">Profile</a>"
        f"<a href=\"{escape(root)}/devices\">Devices</a>"
        f"<a href=\"{escape(root)}/api-demo\">API demo</a><a href=\"{escape(root)}/api/me\">/api/me</a></nav>"
        "<span id=\"session-status\" class=\"status\">checking…</span></header>"
        f"<main>{content}</main>"
        f"<footer>Sign-in by <code>logto_middleware</code> on {escape(framework)}</footer>"
        f"<script>{_SCRIPT}</script>{f'<script>{script}</script>' if script else ''}</body></html>"
    )


def _avatar(user: LogtoUser) -> str:
    initial = escape((user.display_name or "?")[:1].upper())
    image = ""
    if user.image and user.image.startswith(("https://", "http://")):
        # The initial stays underneath when the picture cannot be loaded.
        image = (f"<img src=\"{escape(user.image)}\" alt=\"\" referrerpolicy=\"no-referrer\" "
                 "onerror=\"this.remove()\">")
    return f"<div class=\"avatar\" aria-hidden=\"true\"><span>{initial}</span>{image}</div>"


def _person(user: LogtoUser) -> str:
    email = f"<div class=\"email\">{escape(user.email)}</div>" if user.email else ""
    return (f"<div class=\"person\">{_avatar(user)}<div>"
            f"<h1 class=\"name\">{escape(user.display_name)}</h1>{email}</div></div>")


def _signin(root: str, path: str, direct_sign_in: str | None = None) -> str:
    """Sign in, then back to `path` (within the app) under `root`."""
    return signin_url(root + path, direct_sign_in=direct_sign_in, base_path=root + AUTH_BASE)


def _signout_form(root: str) -> str:
    return signout_form("Sign out", css_class="signout", base_path=root + AUTH_BASE)


def home_page(user: LogtoUser | AnonymousUser, framework: str, *, root: str = "") -> str:
    """`/`; `root` is the prefix the app is served under (ASGI `root_path`, WSGI `SCRIPT_NAME`)."""
    if isinstance(user, LogtoUser):
        content = (
            f"<section class=\"card\">{_person(user)}"
            f"<p class=\"lead\">You are signed in with Logto. This page is rendered by {escape(framework)} "
            "with the user the middleware put on the request.</p>"
            f"<div class=\"stack\"><a class=\"button primary\" href=\"{escape(root)}/profile\">View your profile</a>"
            f"{_signout_form(root)}</div></section>"
        )
        return _layout("Home", framework, content, root)
    social = "".join(
        f"<a class=\"button {css}\" href=\"{escape(_signin(root, '/', connector))}\">"
        f"<span class=\"mark\" aria-hidden=\"true\">{escape(label[:1])}</span>Continue with {escape(label)}</a>"
        for connector, label, css in SOCIAL_CONNECTORS
    )
    content = (
        "<section class=\"card\"><h1>Welcome</h1>"
        f"<p class=\"lead\">A small {escape(framework)} app that signs you in with Logto. "
        "Sign in to see your name, email and picture.</p>"
        f"<div class=\"stack\"><a class=\"button primary\" href=\"{escape(_signin(root, '/'))}\">Sign in</a>"
        f"<div class=\"divider\">or</div>{social}</div></section>"
    )
    return _layout("Home", framework, content, root)


def _claim_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def profile_page(user: LogtoUser, session: Session, framework: str, *, root: str = "") -> str:
    facts = [
        ("User ID", user.id),
        ("Name", user.name or "—"),
        ("Email", user.email or "—"),
        ("Session expires", _iso(session.expires_at) or "—"),
        ("Access token", "present" if session.access_token else "none"),
        ("Scopes", " ".join(scope for scope in session.scopes if scope != "authenticated") or "—"),
    ]
    fact_rows = "".join(f"<dt>{escape(name)}</dt><dd>{escape(value)}</dd>" for name, value in facts)
    claim_rows = "".join(
        f"<tr><td><code>{escape(name)}</code></td><td>{escape(_claim_text(value))}</td></tr>"
        for name, value in sorted(session.id_token_claims.items())
    )
    content = (
        f"<section class=\"card\">{_person(user)}"
        f"<dl class=\"facts\">{fact_rows}</dl>"
        f"<h2>ID token claims</h2><table>{claim_rows}</table>"
        f"<h2>Session</h2><div class=\"stack\">{_signout_form(root)}</div></section>"
    )
    return _layout("Profile", framework, content, root)


_TIME_CLAIMS = frozenset({"exp", "iat", "nbf", "auth_time"})


def _claims_table(table_id: str, claims: Mapping[str, Any]) -> str:
    rows = []
    for name, value in sorted(claims.items()):
        text = _claim_text(value)
        if name in _TIME_CLAIMS and isinstance(value, int):
            text = f"{value} ({_iso(value)})"
        rows.append(f"<tr><td><code>{escape(name)}</code></td><td>{escape(text)}</td></tr>")
    return f"<table id=\"{table_id}\">{''.join(rows)}</table>"


def _notice(element_id: str, message: str) -> str:
    return f"<p class=\"notice\" id=\"{element_id}\">{escape(message)}</p>"


_API_SETUP = (
    "The example API is off. Set AUTH_LOGTO_RESOURCES to the indicator of an API resource of your Logto "
    f"tenant that has the permission {API_SCOPE} (e.g. https://api.example.local), sign out and sign in again; "
    "`make demo` turns it on with the development provider."
)


def _api_section(demo: ApiDemo, root: str) -> str:
    api = demo.api
    if api is None:
        return _notice("api-off", _API_SETUP)
    intro = (f"<p class=\"lead\">This page got an access token for the API resource <code>{escape(api.resource)}"
             f"</code> on the server and called the example API <code>GET {escape(API_PATH)}</code> with it, "
             "the way a back end calls another service. The API checks the token's signature, issuer, "
             f"audience, expiry and the scope <code>{escape(API_SCOPE)}</code>.</p>")
    if demo.token_error is not None:
        retry = escape(_signin(root, "/api-demo"))
        return (intro + _notice("token-error", f"No access token for the API: {demo.token_error}.")
                + f"<div class=\"stack\"><a class=\"button primary\" href=\"{retry}\">Sign in again</a></div>")
    if demo.call_error is not None:
        answer = _notice("api-error", f"The example API could not be reached: {demo.call_error}")
    else:
        css = "badge" if demo.status == 200 else "badge bad"
        body = demo.body if isinstance(demo.body, str) else json.dumps(demo.body, indent=2)
        answer = (f"<p>Status <span id=\"api-status\" class=\"{css}\">{escape(str(demo.status))}</span></p>"
                  f"<pre id=\"api-response\">{escape(body)}</pre>")
    claims = ""
    if demo.token_claims is not None:
        claims = ("<h2>Access token claims</h2><p class=\"lead\">Decoded for display only; the token itself "
                  "never leaves the server.</p>" + _claims_table("token-claims", demo.token_claims))
    return f"{intro}<h2>The example API answered</h2>{answer}{claims}"


def _organization_section(demo: ApiDemo, root: str) -> str:
    if ORGANIZATIONS_SCOPE not in demo.userinfo_scopes or demo.userinfo is None:
        return ""
    organizations = demo.organizations
    if not organizations:
        return ("<h2>Organizations</h2>"
                "<p class=\"lead\" id=\"no-organizations\">You are not a member of any organization.</p>")
    options = "".join(
        f"<option value=\"{escape(org)}\"{' selected' if org == demo.selected_organization else ''}>"
        f"{escape(org)}</option>" for org in organizations)
    switcher = (f"<form class=\"switcher\" method=\"get\" action=\"{escape(root)}/api-demo\">"
                f"<select name=\"organization\" id=\"organization\" aria-label=\"Organization\">{options}</select>"
                "<button type=\"submit\">Switch</button></form>")
    result = ""
    if demo.organization_error is not None:
        result = _notice("organization-error", f"No organization token: {demo.organization_error}.")
    elif demo.organization_claims is not None:
        result = (f"<p class=\"lead\">The organization token for <code>{escape(str(demo.selected_organization))}"
                  "</code>, decoded for display:</p>" + _claims_table("organization-claims", demo.organization_claims))
    return f"<h2>Organizations</h2>{switcher}{result}"


def _userinfo_section(demo: ApiDemo) -> str:
    if demo.userinfo_error is not None:
        return "<h2>User info</h2>" + _notice("userinfo-error", f"userinfo failed: {demo.userinfo_error}")
    if demo.userinfo is None:
        return ""
    shown: dict[str, Any] = {name: demo.userinfo[name] for name in ("custom_data", "identities", "organizations")
             if name in demo.userinfo}
    if not shown:
        return ""
    return "<h2>User info</h2>" + _claims_table("userinfo", shown)


def api_demo_page(user: LogtoUser, demo: ApiDemo, framework: str, *, root: str = "") -> str:
    """`/api-demo`: the example API called with the user's access token, and the organization switcher."""
    content = (
        f"<section class=\"card\"><h1>API demo</h1>{_api_section(demo, root)}"
        f"{_organization_section(demo, root)}{_userinfo_section(demo)}"
        f"<h2>Session</h2><div class=\"stack\">{_signout_form(root)}</div></section>"
    )
    return _layout("API demo", framework, content, root)


# Lists the user's sessions from the middleware's `<base>/sessions` and ends them through
# `<base>/sessions/end` with the CSRF token of `<base>/csrf`. Everything shown is set as text
# (never as HTML). `<base>` is the routes' path on the site, prefix included: the page's
# `data-auth-base`.
_DEVICES_SCRIPT = """
(() => {
  const card = document.getElementById("devices");
  const base = card.dataset.authBase;
  const list = document.getElementById("device-list");
  const message = document.getElementById("devices-message");
  const others = document.getElementById("end-others");
  const json = {accept: "application/json"};
  const when = (iso) => iso ? new Date(iso).toLocaleString() : "unknown";
  const say = (text) => { message.textContent = text; message.hidden = !text; };

  async function end(body) {
    say("");
    const {csrfToken} = await (await fetch(base + "/csrf", {headers: json})).json();
    const response = await fetch(base + "/sessions/end", {
      method: "POST", body: JSON.stringify(body),
      headers: {...json, "content-type": "application/json", "x-csrf-token": csrfToken}});
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) say(answer.error_description || answer.error || `failed (${response.status})`);
    await load();
  }

  function row(session) {
    const item = document.createElement("tr");
    const what = document.createElement("td");
    what.textContent = session.description + (session.current ? " (this device)" : "");
    const dates = document.createElement("td");
    dates.textContent = `signed in ${when(session.created)}, last seen ${when(session.lastSeen)}`;
    const action = document.createElement("td");
    if (!session.current) {
      const button = Object.assign(document.createElement("button"), {type: "button", textContent: "End"});
      button.className = "end";
      button.addEventListener("click", () => end({session: session.id}));
      action.append(button);
    }
    item.append(what, dates, action);
    return item;
  }

  async function load() {
    const response = await fetch(base + "/sessions", {headers: json});
    if (response.status === 401) { say("You are signed out."); list.replaceChildren(); others.hidden = true; return; }
    const {sessions, serverSide} = await response.json();
    list.replaceChildren(...sessions.map(row));
    others.hidden = !serverSide || sessions.length < 2;
    if (!serverSide) say("Sessions live in their browsers' cookies (no AUTH_SESSION_STORE): only this one is listed.");
  }

  others.addEventListener("click", () => end({others: true}));
  load().catch((error) => say(`Could not list the devices: ${error}`));
})();
"""


def auth_base(root: str) -> str:
    """Where the middleware's routes are for an app served under the path `root` ("" for none:
    ASGI's `root_path`, WSGI's `SCRIPT_NAME`)."""
    return root.rstrip("/") + AUTH_BASE


def devices_page(user: LogtoUser, framework: str, root: str = "") -> str:
    """`/devices`: the user's sessions, each with an "End" button, and "Sign out everywhere else".
    The list comes from the middleware's JSON routes, so `root` (the app's path prefix) matters."""
    root = root.rstrip("/")
    content = (
        f"<section class=\"card\" id=\"devices\" data-auth-base=\"{escape(auth_base(root))}\">{_person(user)}"
        "<h2>Your devices</h2>"
        "<p class=\"lead\">Where you are signed in. Last seen is when the session was last written "
        "(a token refresh or a renewal), not your last click.</p>"
        "<p class=\"notice\" id=\"devices-message\" hidden></p>"
        "<table><tbody id=\"device-list\"></tbody></table>"
        "<div class=\"stack\" style=\"margin-top:1rem\">"
        "<button type=\"button\" class=\"button\" id=\"end-others\" hidden>Sign out everywhere else</button>"
        f"{_signout_form(root)}</div></section>"
    )
    return _layout("Devices", framework, content, root, _DEVICES_SCRIPT)
