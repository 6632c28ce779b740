"""The few HTML pages `FakeLogto` shows a browser."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape

BANNER = "Fake Logto \u2014 development only, never use in production"

_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;background:#f4f4f6;color:#1f1f24;margin:0}
.banner{background:#b3261e;color:#fff;text-align:center;padding:.5em;font-weight:600}
main{max-width:26em;margin:3em auto;background:#fff;padding:2em;border-radius:12px;
box-shadow:0 2px 12px rgba(0,0,0,.08)}
h1{font-size:1.4em;margin-top:0}
label{display:block;margin:1em 0 .3em}
input[type=text]{width:100%;box-sizing:border-box;padding:.6em;font-size:1em;
border:1px solid #c4c4cc;border-radius:8px}
.actions{display:flex;gap:.5em;margin-top:1.2em}
button{flex:1;padding:.6em;font-size:1em;border-radius:8px;border:0;cursor:pointer}
button.primary{background:#5d34f2;color:#fff}
button.secondary{background:#e8e8ee;color:#1f1f24}
.note{background:#eef;padding:.6em .8em;border-radius:8px;font-size:.9em}
.error{background:#fdecea;color:#b3261e;padding:.6em .8em;border-radius:8px}
small,code{color:#55555f}
"""


def _layout(title: str, content: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)} \u00b7 Fake Logto</title><style>{_STYLE}</style></head>"
        f"<body><div class='banner'>{escape(BANNER)}</div><main>{content}</main></body></html>"
    )


def login_page(
    action: str,
    params: Mapping[str, str] | Iterable[tuple[str, str]],
    *,
    login_hint: str = "",
    direct_sign_in: str | None = None,
    error: str | None = None,
) -> str:
    """The sign-in form; ``params`` are the authorization request, kept as hidden fields
    (pairs may repeat a name, e.g. several ``resource`` values)."""
    pairs = params.items() if isinstance(params, Mapping) else params
    hidden = "".join(
        f"<input type='hidden' name='{escape(k)}' value='{escape(v)}'>" for k, v in pairs
    )
    parts = ["<h1>Sign in</h1>"]
    if error:
        parts.append(f"<p class='error'>{escape(error)}</p>")
    if direct_sign_in:
        parts.append(
            "<p class='note'>The app asked for direct sign-in with "
            f"<code>{escape(direct_sign_in)}</code>; this fake signs you in by name instead.</p>"
        )
    parts.append(
        f"<form method='post' action='{escape(action)}'>{hidden}"
        "<label for='login'>User name</label>"
        f"<input type='text' id='login' name='login' value='{escape(login_hint)}' "
        "autocomplete='username' autofocus pattern='[A-Za-z0-9][A-Za-z0-9._\\-]*'>"
        "<div class='actions'>"
        "<button class='primary' type='submit' name='action' value='login'>Sign in</button>"
        "<button class='secondary' type='submit' name='action' value='cancel' "
        "formnovalidate>Cancel</button></div></form>"
        "<p><small>Any name signs you in as that user (e.g. <code>alice</code>); "
        "<code>deny</code> refuses.</small></p>"
    )
    return _layout("Sign in", "".join(parts))


def error_page(title: str, message: str) -> str:
    """A page for requests that cannot be redirected back to the app."""
    return _layout(title, f"<h1>{escape(title)}</h1><p class='error'>{escape(message)}</p>")


def signed_out_page() -> str:
    """Shown after end-session when there is nowhere to redirect to."""
    return _layout("Signed out", "<h1>Signed out</h1><p>You have been signed out.</p>")


def index_page(issuer: str, client_id: str) -> str:
    """A landing page pointing at the discovery document."""
    discovery = f"{issuer}/.well-known/openid-configuration"
    return _layout(
        "Fake Logto",
        "<h1>Fake Logto</h1>"
        f"<p>Issuer: <code>{escape(issuer)}</code><br>"
        f"Client ID: <code>{escape(client_id)}</code></p>"
        f"<p><a href='{escape(discovery)}'>OpenID configuration</a></p>",
    )
