"""The few HTML pages the middleware serves itself: errors and the sign-out confirmation."""

from __future__ import annotations

from html import escape

__all__ = ["ERRORS", "error_page", "error_status", "signout_page", "unavailable_page"]

# Auth.js's error names, so front-end code written for Auth.js understands them.
ERRORS: dict[str, tuple[int, str]] = {
    "AccessDenied": (403, "Sign-in was cancelled or access was denied."),
    "Verification": (400, "The sign-in response could not be verified. Please try again."),
    "OAuthCallbackError": (400, "The identity provider returned an error. Please try again."),
    "MissingCSRF": (400, "The sign-in request expired or came from another browser. Please try again."),
    "SignInNotRecent": (400, "The identity provider did not confirm a recent enough sign-in. Please sign in again."),
    "InvalidMaxAge": (400, "The sign-in link asked for an invalid max_age (whole seconds, up to a year)."),
    "Configuration": (502, "The identity provider answered something unexpected. Please try again later."),
    "ProviderUnavailable": (503, "The identity provider cannot be reached right now. Please try again later."),
    "Default": (400, "Something went wrong while signing in."),
}

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;"
          "color:#1f2328}h1{font-size:1.4rem}button,a.button{font:inherit;padding:.5rem 1rem;"
          "border-radius:.4rem;border:1px solid #5d3cf2;background:#5d3cf2;color:#fff;cursor:pointer;"
          "text-decoration:none}code{background:#f3f3f6;padding:.1rem .3rem;border-radius:.2rem}")


def _page(title: str, body: str) -> bytes:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body>{body}</body></html>").encode()


def error_status(code: str) -> int:
    return ERRORS.get(code, ERRORS["Default"])[0]


def error_page(code: str, home: str) -> bytes:
    known = code if code in ERRORS else "Default"
    message = ERRORS[known][1]
    return _page("Sign-in error", f"<h1>Sign-in error</h1><p>{escape(message)}</p>"
                 f"<p>Error code: <code>{escape(known)}</code></p>"
                 f"<p><a class=\"button\" href=\"{escape(home)}\">Back to the app</a></p>")


def signout_page(action: str, csrf_token: str) -> bytes:
    return _page("Sign out", "<h1>Sign out</h1><p>Are you sure you want to sign out?</p>"
                 f"<form method=\"post\" action=\"{escape(action)}\">"
                 f"<input type=\"hidden\" name=\"csrfToken\" value=\"{escape(csrf_token)}\">"
                 "<button type=\"submit\">Sign out</button></form>")


def unavailable_page() -> bytes:
    return _page("Temporarily unavailable", "<h1>Temporarily unavailable</h1>"
                 "<p>Sessions cannot be read right now. You are still signed in: please try again in a moment.</p>")
