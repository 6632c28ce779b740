"""What the Starlette and the Flask example share: settings from the environment, the JSON of
`/api/me`, and the HTML pages (plain HTML and a little CSS, no build step).

Both apps add this folder to `sys.path` and `import common`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlencode

from logto_middleware import AnonymousUser, LogtoConfig, LogtoUser, Session

__all__ = [
    "NO_STORE",
    "SETUP_HINT",
    "UNAUTHORIZED",
    "configure_logging",
    "exit_quietly",
    "home_page",
    "listen_address",
    "load_config",
    "load_dotenv_file",
    "me_payload",
    "profile_page",
    "public_url",
    "signin_redirect",
    "signin_url",
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
    """`LogtoConfig.from_env()`, plus the optional `AUTH_REFRESH_LEEWAY` (seconds).

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
    return LogtoConfig.from_env(environ, **overrides)


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


def public_url(host: str, port: int) -> str:
    """The URL to open in a browser; loopback and wildcard addresses read better as `localhost`."""
    if host in ("127.0.0.1", "::1", "0.0.0.0", "::", "localhost"):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


# -- URLs and JSON -----------------------------------------------------------------------------


def signin_url(callback: str = "/", direct_sign_in: str | None = None) -> str:
    """The middleware's sign-in route, coming back to `callback` (a path of this app)."""
    params = {"callbackUrl": callback}
    if direct_sign_in:
        params["direct_sign_in"] = direct_sign_in
    return f"{AUTH_BASE}/signin?{urlencode(params, safe='/:')}"


def signin_redirect(path: str, query: str = "") -> str:
    """Where a protected page sends an anonymous visitor: sign in, then back to the page."""
    return signin_url(f"{path}?{query}" if query else path)


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
    }


# -- HTML --------------------------------------------------------------------------------------

_CSS = """
:root{--brand:#5d34f2;--brand-dark:#4524c9;--ink:#1f1d2b;--muted:#6b6880;--line:#e6e4ef;--bg:#f6f5fb}
*{box-sizing:border-box}
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
form{margin:0}
footer{text-align:center;color:var(--muted);font-size:.85rem;margin:2rem 0}
"""

# Asks the middleware whether this browser is signed in (Auth.js's `isAuthenticated()` pattern)
# and fills the sign-out form's CSRF token.
_SCRIPT = """
(async () => {
  const status = document.getElementById("session-status");
  try {
    const response = await fetch("/api/auth/session", {headers: {accept: "application/json"}});
    const session = response.ok ? await response.json() : null;
    const signedIn = Boolean(session && session.user);
    status.textContent = signedIn ? "signed in" : "signed out";
    status.dataset.state = signedIn ? "in" : "out";
  } catch (error) {
    status.textContent = "session unknown";
  }
  const fields = document.querySelectorAll("input[name=csrfToken]");
  if (fields.length) {
    const response = await fetch("/api/auth/csrf", {headers: {accept: "application/json"}});
    const {csrfToken} = await response.json();
    fields.forEach((field) => { field.value = csrfToken; });
  }
})();
"""


def _layout(title: str, framework: str, content: str) -> str:
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{escape(title)} · Logto + {escape(framework)}</title><style>{_CSS}</style></head><body>"
        "<header class=\"topbar\">"
        f"<a class=\"brand\" href=\"/\"><span class=\"logo\">L</span>Logto + {escape(framework)}</a>"
        "<nav><a href=\"/\">Home</a><a href=\"/profile\">Profile</a><a href=\"/api/me\">/api/me</a></nav>"
        "<span id=\"session-status\" class=\"status\">checking…</span></header>"
        f"<main>{content}</main>"
        f"<footer>Sign-in by <code>logto_middleware</code> on {escape(framework)}</footer>"
        f"<script>{_SCRIPT}</script></body></html>"
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


def _signout_form() -> str:
    # A same-origin form POST carries an Origin header, which the middleware accepts; the token
    # (filled in by the script from /api/auth/csrf) makes it work without one too.
    return (f"<form method=\"post\" action=\"{AUTH_BASE}/signout\">"
            "<input type=\"hidden\" name=\"csrfToken\" value=\"\">"
            "<button class=\"button\" type=\"submit\">Sign out</button></form>")


def home_page(user: LogtoUser | AnonymousUser, framework: str) -> str:
    if isinstance(user, LogtoUser):
        content = (
            f"<section class=\"card\">{_person(user)}"
            f"<p class=\"lead\">You are signed in with Logto. This page is rendered by {escape(framework)} "
            "with the user the middleware put on the request.</p>"
            "<div class=\"stack\"><a class=\"button primary\" href=\"/profile\">View your profile</a>"
            f"{_signout_form()}</div></section>"
        )
        return _layout("Home", framework, content)
    social = "".join(
        f"<a class=\"button {css}\" href=\"{escape(signin_url('/', connector))}\">"
        f"<span class=\"mark\" aria-hidden=\"true\">{escape(label[:1])}</span>Continue with {escape(label)}</a>"
        for connector, label, css in SOCIAL_CONNECTORS
    )
    content = (
        "<section class=\"card\"><h1>Welcome</h1>"
        f"<p class=\"lead\">A small {escape(framework)} app that signs you in with Logto. "
        "Sign in to see your name, email and picture.</p>"
        f"<div class=\"stack\"><a class=\"button primary\" href=\"{escape(signin_url('/'))}\">Sign in</a>"
        f"<div class=\"divider\">or</div>{social}</div></section>"
    )
    return _layout("Home", framework, content)


def _claim_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def profile_page(user: LogtoUser, session: Session, framework: str) -> str:
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
        f"<h2>Session</h2><div class=\"stack\">{_signout_form()}</div></section>"
    )
    return _layout("Profile", framework, content)
