"""What each `LogtoConfig` setting means, for the generated configuration reference.

The build reads the fields, their types and defaults, and the `AUTH_*` variable each one is read
from straight from `LogtoConfig`; only the meaning is written here. A field of `LogtoConfig`
without an entry below fails the build (`make docs`), and so does an entry for a field that no
longer exists: add or remove the entry with the field.
"""

# The settings an app gives (keyword arguments of LogtoConfig, or its AUTH_* variables).
SETTINGS: dict[str, str] = {
    "issuer": (
        "Your tenant's OpenID Connect issuer, `https://<tenant>.logto.app/oidc` on Logto Cloud (the "
        "discovery URL ending in `/.well-known/openid-configuration` is accepted and shortened). It must "
        "use https; plain http is accepted only for `localhost`, `127.0.0.1` and `::1`."
    ),
    "client_id": "The App ID of your *Traditional web* application in Logto's console.",
    "client_secret": "The App secret of that application.",
    "secret": (
        "The key material the session cookies are encrypted with, at least 32 characters "
        "(`openssl rand -base64 33` makes one). A list rotates secrets: the first one encrypts, all of "
        "them decrypt. From the environment, in `@auth/core`'s order: `AUTH_SECRET_3`, `AUTH_SECRET_2`, "
        "`AUTH_SECRET_1` (the highest number is the newest), then `AUTH_SECRET`, which may itself be a "
        "comma-separated list."
    ),
    "base_url": (
        "The app's public origin, such as `https://example.com`. Without it the origin is taken from "
        "the request; set it in production. A path in it says where the routes are on the site, as in "
        "Auth.js: `https://example.com/app/api/auth` (see [apps under a prefix](../deployment.md#apps-under-a-prefix))."
    ),
    "trust_host": (
        "Whether to believe `X-Forwarded-Host` and `X-Forwarded-Proto`. Turn it on only behind a proxy "
        "that sets them (see [proxies](../deployment.md#behind-a-proxy))."
    ),
    "base_path": (
        "Where the middleware's routes are within the app. An app served under a prefix has them under "
        "the prefix too. A path in `base_url` sets it; giving both, differently, is an error."
    ),
    "scopes": (
        "The OAuth scopes asked for at sign-in, a space-separated string or a sequence; `openid` is "
        "required. Add `custom_data`, `identities`, `urn:logto:scope:organizations` or your API's "
        "scopes as you need them (see [Logto features](../logto-features.md))."
    ),
    "post_login_redirect": (
        "Where a user lands after signing in when the sign-in link gave no `callbackUrl`; under a "
        "prefix, the prefix is added."
    ),
    "post_logout_redirect": (
        "Where Logto sends the user back after signing out; `None` means the app's origin plus `/` "
        "(plus the prefix). Register it as a post sign-out redirect URI in Logto's console."
    ),
    "session_max_age": "Seconds of inactivity after which a session ends (30 days).",
    "session_update_age": (
        "Seconds after which an active session's cookie is issued again with a new expiry (one day): "
        "a session in use does not expire."
    ),
    "refresh_leeway": (
        "The access token is refreshed on a request when it expires within this many seconds, before "
        "your app runs."
    ),
    "id_token_algorithms": (
        "The signature algorithms accepted on ID tokens. Logto signs with ES384. Only asymmetric "
        "algorithms are accepted (`none` and `HS*` are refused)."
    ),
    "profile": (
        "A function from the ID token claims to the user's `id`, `name`, `email` and `image`, to map "
        "the user yourself. It runs under the fail-closed rule: if it raises, the sign-in ends on the "
        "`Configuration` error page, a session it cannot map is cleared, and the traceback is logged once."
    ),
    "hooks": (
        "A `LogtoHooks` instance: the app's say in sign-in and sessions, as Auth.js's `callbacks` and "
        "`events` (refuse or redirect a sign-in, add fields to the session, shape `/session`, hear "
        "sign-ins, sign-outs, provider logouts and failed refreshes). See [hooks](../hooks.md)."
    ),
    "prompt": (
        "The `prompt` sent to Logto. Logto issues a refresh token only with `consent`, which is the "
        "default; `None` sends none."
    ),
    "http_timeout": (
        "Seconds for each step of a call to Logto (connecting, sending, each read of the answer)."
    ),
    "http_deadline": (
        "Seconds for a whole call to Logto, however slowly it answers; `None` means twice "
        "`http_timeout`. Past it the call fails as Logto being unavailable: a 503, the session kept."
    ),
    "clock_skew": "Seconds of clock difference with Logto tolerated when checking a token's times.",
    "session_store": (
        "Where sessions live: `cookie` (the whole session in an encrypted cookie), `memory` (one "
        "process), or a `redis://`, `rediss://` or `unix://` URL. See [sessions and stores](../sessions.md)."
    ),
    "resources": (
        "API resource indicators (absolute URIs) to ask access tokens for at sign-in "
        "(RFC 8707). From the environment: a comma-separated list."
    ),
    "session_format": (
        "`logto`, or `authjs` to read and write the session cookie of an Auth.js front end "
        "(see [Auth.js](../authjs.md)); `authjs` cannot be combined with a server-side store."
    ),
    "refresh_lock": (
        "How the app's processes agree on who refreshes a session: empty (a private directory of this "
        "host), an absolute directory, a `redis://` URL (several hosts), or `off` (one process only). "
        "Server-side stores use their own lock. See [deployment](../deployment.md#several-processes-and-hosts)."
    ),
}

# Attributes computed from the settings (dataclass fields with init=False): read them, never pass them.
COMPUTED: dict[str, str] = {
    "secrets": "Every secret, the encrypting one first, as read from `secret`.",
    "scope_list": "The scopes as a tuple, without duplicates.",
    "base_path_from_url": "Whether `base_path` came from the path of `base_url`.",
}
