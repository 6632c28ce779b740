"""Links and forms for signing in and out, for any framework's templates."""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

__all__ = ["signin_url", "signout_form"]


def signin_url(callback_url: str | None = None, *, direct_sign_in: str | None = None,
               first_screen: str | None = None, login_hint: str | None = None,
               base_path: str = "/api/auth") -> str:
    """The sign-in link: `signin_url("/profile", direct_sign_in="social:wechat")`."""
    params = {"callbackUrl": callback_url, "direct_sign_in": direct_sign_in, "first_screen": first_screen,
              "login_hint": login_hint}
    query = urlencode({k: v for k, v in params.items() if v})
    return f"{base_path}/signin" + (f"?{query}" if query else "")


def signout_form(label: str = "Sign out", *, callback_url: str | None = None, everywhere: bool = False,
                 csrf_token: str | None = None, css_class: str = "", base_path: str = "/api/auth") -> str:
    """An HTML form that signs out with a POST (a GET never signs out). A same-origin form is
    accepted as it is; `csrf_token` (from `{base_path}/csrf`) is only needed cross-origin."""
    fields = [("callbackUrl", callback_url), ("everywhere", "1" if everywhere else None), ("csrfToken", csrf_token)]
    hidden = "".join(f'<input type="hidden" name="{name}" value="{escape(value)}">' for name, value in fields if value)
    css = f' class="{escape(css_class)}"' if css_class else ""
    return (f'<form method="post" action="{escape(base_path)}/signout"{css}>{hidden}'
            f'<button type="submit">{escape(label)}</button></form>')
