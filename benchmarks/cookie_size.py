"""Section 7: the size of the session cookie for the realistic Logto token set.

Two cookies: the one `make_session_cookie` seals for the realistic token set (ES384 ID token,
two 43-character opaque tokens), and the one the middleware itself sets at the end of a real
sign-in with FakeLogto for a user with the same profile. Both on an https origin
(`__Host-logto.session-token`). The figure is the full Set-Cookie header (name, value and
attributes): it must be one cookie (no `.0`, `.1` chunks) of at most 4096 bytes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import fixtures as fx
import httpx
from fixtures import Log

from logto_middleware import LogtoASGIMiddleware

LIMIT = 4096


def run(log: Log) -> dict[str, Any]:
    fake = fx.fake_logto()
    cfg = fx.config()
    tokens = fx.token_set(fake)
    sealed = fx.cookie_store_cookie(cfg, tokens)
    app = LogtoASGIMiddleware(fx.starlette_app(), cfg, http_client=httpx.AsyncClient(
        transport=fx.ProviderTransport(fake)))
    # The Set-Cookie headers of the callback, from a real sign-in through the middleware.
    status, headers = fx.asgi_status_headers(fx.call_asgi(app, fx.asgi_scope("/api/auth/signin")))
    callback = urlsplit(fake.authorize(str(fx.header(headers, "location")), login=fx.USER))
    transaction = "; ".join(f"{k}={v}" for k, v in fx.cookies_from(headers).items())
    scope = fx.asgi_scope(callback.path, transaction, callback.query)
    status, headers = fx.asgi_status_headers(fx.call_asgi(app, scope))
    set_cookies = [v for k, v in headers if k == "set-cookie" and "session-token" in v.split("=", 1)[0]]
    if status != 302 or not set_cookies:
        raise RuntimeError(f"sign-in failed: {status}")
    pairs = [c.split(";", 1)[0] for c in sealed.split("; ")]
    out = {
        "id_token_bytes": len(tokens.id_token), "access_token_chars": len(tokens.access_token),
        "refresh_token_chars": len(tokens.refresh_token),
        "token_set_cookie": {"cookies": len(pairs), "name_value_bytes": max(len(p) for p in pairs),
                             "value_bytes": max(len(p.split("=", 1)[1]) for p in pairs)},
        "sign_in_cookie": {"cookies": len(set_cookies), "set_cookie_bytes": max(len(c) for c in set_cookies),
                           "name_value_bytes": max(len(c.split(";", 1)[0]) for c in set_cookies),
                           "value_bytes": max(len(c.split(";", 1)[0].split("=", 1)[1]) for c in set_cookies)},
        "limit_bytes": LIMIT,
    }
    attributes = len(set_cookies[0]) - len(set_cookies[0].split(";", 1)[0])
    out["token_set_cookie"]["set_cookie_bytes"] = out["token_set_cookie"]["name_value_bytes"] + attributes
    out["fits"] = all(out[k]["cookies"] == 1 and out[k]["set_cookie_bytes"] <= LIMIT
                      for k in ("token_set_cookie", "sign_in_cookie"))
    log(f"7. cookie size: {out['token_set_cookie']['set_cookie_bytes']} bytes (token set), "
        f"{out['sign_in_cookie']['set_cookie_bytes']} bytes (real sign-in), ID token {len(tokens.id_token)} bytes")
    return out
