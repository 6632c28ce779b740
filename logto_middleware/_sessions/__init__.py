"""Sessions: the codecs that carry them (`cookie.CookieStore`, the Auth.js cookie in `authjs`, the
server-side session id in `server`), a request's session state (`state`), the manager that reads,
refreshes, rolls and writes them (`manager`), the cipher, and cookie headers."""
