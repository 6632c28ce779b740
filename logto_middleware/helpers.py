"""Links and forms for signing in and out, for any framework's templates; and the answer to a
request that needs a more recent sign-in, which every framework's guard turns into its own
response."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Protocol
from urllib.parse import urlencode

from ._protocol.freshness import require_max_age

__all__ = ["FreshAuthRefusal", "fresh_auth_refusal", "signin_url", "signout_form"]


def signin_url(callback_url: str | None = None, *, direct_sign_in: str | None = None,
               first_screen: str | None = None, login_hint: str | None = None,
               base_path: str = "/api/auth", max_age: int | None = None) -> str:
    """The sign-in link: `signin_url("/profile", direct_sign_in="social:wechat")`. With
    `max_age`, the sign-in must be at most that many seconds old when it comes back (Logto asks
    for credentials again if its own session is older; 0 always asks)."""
    params = {"callbackUrl": callback_url, "direct_sign_in": direct_sign_in, "first_screen": first_screen,
              "login_hint": login_hint}
    pairs = [(k, v) for k, v in params.items() if v]
    if max_age is not None:
        pairs.append(("max_age", str(require_max_age(max_age))))
    query = urlencode(pairs)
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


class _SignInTime(Protocol):
    def authenticated_within(self, seconds: int) -> bool: ...


@dataclass(frozen=True)
class FreshAuthRefusal:
    """What to answer a request whose sign-in is not recent enough: `status` 303 with a
    `location` header for a page (sign in again, then come back), or 401 with a
    `www-authenticate` challenge (RFC 9470's `insufficient_user_authentication`) and a JSON
    `body` for an API."""

    status: int
    headers: dict[str, str]
    body: dict[str, object] | None = field(default=None)


def fresh_auth_refusal(session: _SignInTime | None, max_age: int, *, here: str, base_path: str = "/api/auth",
                       page: bool = True) -> FreshAuthRefusal | None:
    """None when `session` (a `Session`, or None when anonymous) signed in at most `max_age`
    seconds ago; otherwise the answer for the request to `here` (its path and query), a `page`
    or an API call. The frameworks' guards are made of this; a plain ASGI or WSGI app can use it
    as it is:

        refusal = fresh_auth_refusal(environ["logto.session"], 300, here=path, base_path=...)
        if refusal is not None: ...answer refusal.status with refusal.headers...
    """
    require_max_age(max_age)
    if session is not None and session.authenticated_within(max_age):
        return None
    location = signin_url(here, base_path=base_path, max_age=max_age)
    if page:
        return FreshAuthRefusal(303, {"location": location, "cache-control": "no-store"})
    challenge = ('Cookie error="insufficient_user_authentication", '
                 f'error_description="A more recent sign-in is required", max_age="{max_age}"')
    return FreshAuthRefusal(401, {"www-authenticate": challenge, "cache-control": "no-store"},
                            {"error": "insufficient_user_authentication", "max_age": max_age, "signin_url": location})
