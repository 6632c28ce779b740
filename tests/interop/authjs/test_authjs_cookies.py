"""Auth.js session cookies, byte for byte against the real @auth/core (pinned in package-lock.json).

Every case runs both ways where it makes sense: tokens made by @auth/core's `encode` are read by
`AuthJsCookieStore` and by the middleware (ASGI and WSGI), and tokens and cookies we write are read
by @auth/core's `decode` and `getToken`. The node side is one `jwt_tool.mjs` process per module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from conftest import SECRET, Clock, Harness
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.testclient import TestClient

from logto_middleware import LogtoConfig
from logto_middleware._sessions.authjs import (
    AuthJsCookieStore,
    AuthJsCsrfSigner,
    session_from_token,
    token_from_session,
)
from logto_middleware._sessions.cookies import CHUNK_SIZE, parse_cookie_header, read_chunked, write_chunked
from logto_middleware.testing import FakeLogto

from .nodejs import JwtTool, NodeUnavailable, node_ready

NAME = "authjs.session-token"
SECURE_NAME = "__Secure-authjs.session-token"
NEW = SECRET
OLD = "old-secret-9876543210-zyxwvutsrqponmlkji"
OTHER = "other-secret-nobody-configured-0123456789"
EXPECTED_CORE = "0.41."
AUTHJS_CHUNK = 4096 - 160  # @auth/core lib/utils/cookie.ts: ALLOWED_COOKIE_SIZE - ESTIMATED_EMPTY_COOKIE_SIZE


@pytest.fixture(scope="module")
def node() -> Iterator[JwtTool]:
    try:
        tool = JwtTool(node_ready())
    except NodeUnavailable as exc:
        pytest.skip(f"Auth.js interop needs Node.js: {exc}")
    try:
        assert tool.versions["core"].startswith(EXPECTED_CORE), tool.versions
        yield tool
    finally:
        tool.close()


@pytest.fixture
def clock() -> Clock:
    # @auth/core reads the real clock: the middleware must agree with it.
    return Clock(time.time())


def now() -> int:
    return int(time.time())


def user_token(**extra: Any) -> dict[str, Any]:
    """What an Auth.js app with the refresh-token-rotation guide's jwt callback keeps, plus fields of
    its own (kept through our rewrites) and non-ASCII text."""
    token: dict[str, Any] = {
        "sub": "user-1", "name": "Zoë Lovelace 🚀", "email": "zoe@example.com",
        "picture": "https://avatars.example.com/zoe.png", "access_token": "at-1", "expires_at": now() + 3600,
        "refresh_token": "rt-1", "id_token": "header.payload.signature", "scope": "openid offline_access profile",
        "role": "admin", "nested": {"list": [1, 2.5, None, True], "text": "ünïcödé"},
    }
    token.update(extra)
    return token


def secure(name: str) -> bool:
    return name.startswith("__Secure-")


def store(*secrets: str) -> AuthJsCookieStore:
    return AuthJsCookieStore(list(secrets))


def header_of(jwt: str) -> dict[str, Any]:
    segment = jwt.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))


def without_registered(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in ("iat", "exp", "jti")}


def authjs_harness(kind: str, clock: Clock, secret: str | list[str] = NEW, https: bool = False,
                   fake: FakeLogto | None = None) -> Harness:
    settings: dict[str, Any] = {"session_format": "authjs", "secret": secret}
    if https:
        settings["base_url"] = "https://app.example"
    return Harness(kind, fake or FakeLogto(clock=clock), clock, **settings)


def https_client(harness: Harness) -> httpx.Client:
    """A browser on https://app.example for a harness whose base_url is that origin."""
    if harness.kind == "asgi":
        return TestClient(harness.middleware, base_url="https://app.example", follow_redirects=False)
    return httpx.Client(transport=httpx.WSGITransport(app=harness.middleware), base_url="https://app.example",
                        follow_redirects=False)


def set_cookies(response: httpx.Response) -> list[tuple[str, str, str]]:
    """(name, value, attributes) of every Set-Cookie header."""
    found = []
    for header in response.headers.get_list("set-cookie"):
        pair, _, attributes = header.partition(";")
        name, _, value = pair.partition("=")
        found.append((name.strip(), value.strip(), attributes))
    return found


def session_cookie_header(response: httpx.Response) -> str:
    """A Cookie header with the session cookies (chunks) a response set, deletions left out."""
    pairs = [(n, v) for n, v, attrs in set_cookies(response)
             if "authjs.session-token" in n and v and "Max-Age=0" not in attrs]
    return "; ".join(f"{n}={v}" for n, v in pairs)


# -- independent JWE crafting (no joserfc, no jose): for tokens no library would write -----------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def authjs_key(secret: str, salt: str, length: int) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=salt.encode(),
                info=f"Auth.js Generated Encryption Key ({salt})".encode())
    return hkdf.derive(secret.encode())


def thumbprint(key: bytes) -> str:
    member = ('{"k":"%s","kty":"oct"}' % b64(key)).encode()  # noqa: UP031 - RFC 7638's exact JSON
    return b64((hashlib.sha512 if len(key) == 64 else hashlib.sha256)(member).digest())


def craft(header: dict[str, Any], plaintext: bytes, secret: str = NEW, salt: str = NAME) -> str:
    """A compact JWE with `dir` and whatever `header` says, encrypted by hand (RFC 7516/7518)."""
    enc = header.get("enc", "A256CBC-HS512")
    key = authjs_key(secret, salt, 32 if enc == "A256GCM" else 64)
    if header.get("zip") == "DEF":
        deflate = zlib.compressobj(wbits=-15)
        plaintext = deflate.compress(plaintext) + deflate.flush()
    protected = b64(json.dumps(header, separators=(",", ":")).encode())
    aad = protected.encode()
    if enc == "A256GCM":
        iv = os.urandom(12)
        sealed = AESGCM(key).encrypt(iv, plaintext, aad)
        ciphertext, tag = sealed[:-16], sealed[-16:]
    else:
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        encryptor = Cipher(algorithms.AES(key[32:]), modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(padder.update(plaintext) + padder.finalize()) + encryptor.finalize()
        mac = hmac.new(key[:32], aad + iv + ciphertext + (len(aad) * 8).to_bytes(8, "big"), hashlib.sha512)
        tag = mac.digest()[:32]
    return ".".join([protected, "", b64(iv), b64(ciphertext), b64(tag)])


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "user-1", "name": "Ada", "iat": now(), "exp": now() + 600, "jti": "j-1", **extra}


def kid(secret: str = NEW, salt: str = NAME, enc: str = "A256CBC-HS512") -> str:
    return thumbprint(authjs_key(secret, salt, 32 if enc == "A256GCM" else 64))


def ours_accepts(token: str, secrets: list[str], salt: str = NAME) -> bool:
    """The whole read path of the middleware: decrypt and validate, then map to a session."""
    payload = AuthJsCookieStore(secrets).decode(token, salt)
    return payload is not None and session_from_token(payload) is not None


def discrepancy(reason: str) -> pytest.MarkDecorator:
    """A known difference from @auth/core: strict, so the test fails once it is gone; and only
    the verdicts' disagreement (an `AssertionError`) is expected, so a Node side that could not
    answer (`NodeFailure`) fails the test rather than passing for the discrepancy."""
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=f"discrepancy: {reason}")


# -- Auth.js -> us --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [NAME, SECURE_NAME])
def test_authjs_token_decodes_to_the_same_user_and_tokens(node: JwtTool, name: str) -> None:
    token = user_token()
    jwt = node.ok("encode", token=token, secret=NEW, salt=name)["jwt"]

    header = header_of(jwt)
    assert header == {"alg": "dir", "enc": "A256CBC-HS512", "kid": kid(NEW, name)}
    payload = store(NEW).decode(jwt, name)
    assert payload is not None
    assert without_registered(payload) == token
    assert isinstance(payload["iat"], int) and payload["exp"] == payload["iat"] + 30 * 24 * 3600
    assert isinstance(payload["jti"], str) and len(payload["jti"]) == 36

    data = session_from_token(payload)
    assert data is not None
    assert data.claims == {k: token[k] for k in ("sub", "name", "email", "picture")}
    assert (data.access_token, data.refresh_token, data.id_token) == ("at-1", "rt-1", token["id_token"])
    assert data.access_token_expires_at == token["expires_at"] and data.expires_at == payload["exp"]
    assert data.scope == token["scope"]
    # Nothing is lost when we write it back: Auth.js's own fields survive our rewrite.
    assert token_from_session(data) == token


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_authjs_cookie_and_bearer_through_the_middleware(node: JwtTool, kind: str, clock: Clock,
                                                         https: bool) -> None:
    name = SECURE_NAME if https else NAME
    jwt = node.ok("encode", token=user_token(), secret=NEW, salt=name)["jwt"]
    harness = authjs_harness(kind, clock, https=https)
    for headers in ({"cookie": f"{name}={jwt}"}, {"authorization": f"Bearer {jwt}"}):
        response = harness.client.get("/", headers=headers)
        body = response.json()
        assert body["authenticated"] is True, headers
        assert (body["id"], body["name"], body["email"]) == ("user-1", "Zoë Lovelace 🚀", "zoe@example.com")
        assert body["image"] == "https://avatars.example.com/zoe.png"
        assert body["access_token"] == "at-1"
        assert response.headers.get_list("set-cookie") == []  # read only: nothing to rewrite
    # The other scheme's cookie name is not this site's session.
    other = NAME if https else SECURE_NAME
    assert harness.client.get("/", headers={"cookie": f"{other}={jwt}"}).json()["authenticated"] is False


# -- us -> Auth.js --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [NAME, SECURE_NAME])
def test_our_token_is_accepted_by_authjs_decode_and_get_token(node: JwtTool, name: str) -> None:
    token = user_token()
    jwt = store(NEW).encode(token, name)
    ours = store(NEW).decode(jwt, name)
    assert ours is not None
    decoded, by_cookie, by_bearer, by_encoded_bearer = node.batch([
        {"op": "decode", "jwt": jwt, "secret": NEW, "salt": name},
        {"op": "getToken", "secret": NEW, "secureCookie": secure(name), "cookie": f"other=1; {name}={jwt}; x=y"},
        {"op": "getToken", "secret": NEW, "secureCookie": secure(name), "authorization": f"Bearer {jwt}"},
        {"op": "getToken", "secret": NEW, "secureCookie": secure(name),
         "authorization": "Bearer " + jwt.replace(".", "%2E")},
    ])
    for answer in (decoded, by_cookie, by_bearer, by_encoded_bearer):
        assert answer["ok"], answer
        assert answer["payload"] == ours
    assert without_registered(ours) == token


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_cookie_written_at_sign_in_is_read_by_get_token(node: JwtTool, kind: str, clock: Clock,
                                                        https: bool) -> None:
    fake = FakeLogto(clock=clock)
    harness = authjs_harness(kind, clock, https=https, fake=fake)
    if https:  # the client must speak https too, or its jar keeps the Secure transaction cookie back
        client = https_client(harness)
        start = client.get("/api/auth/signin")
        callback = client.get(fake.authorize(start.headers["location"], login="alice"))
    else:
        callback = harness.sign_in("alice")
    assert callback.status_code == 302, callback.text
    name = SECURE_NAME if https else NAME
    written = [(n, attrs) for n, _v, attrs in set_cookies(callback) if "authjs.session-token" in n]
    assert [n for n, _ in written] == [name]
    assert ("Secure" in written[0][1]) is https and "HttpOnly" in written[0][1]

    answer = node.ok("getToken", secret=NEW, secureCookie=https, cookie=session_cookie_header(callback))
    token = answer["payload"]
    user = fake.user_claims("alice")
    assert (token["sub"], token["name"], token["email"], token["picture"]) == (
        user["sub"], user["name"], user["email"], user["picture"])
    assert token["access_token"] and token["refresh_token"] and token["id_token"]
    assert isinstance(token["expires_at"], int) and token["expires_at"] > now()
    assert token["exp"] - token["iat"] == harness.config.session_max_age
    assert set(token) >= {"iat", "exp", "jti"}


# -- chunking -------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [100, AUTHJS_CHUNK, AUTHJS_CHUNK + 1, 3 * AUTHJS_CHUNK, 3 * AUTHJS_CHUNK + 7])
@pytest.mark.parametrize("name", [NAME, SECURE_NAME])
def test_we_chunk_exactly_like_authjs_session_store(node: JwtTool, name: str, length: int) -> None:
    value = (b64(os.urandom(length)) * 2)[:length]
    ours = [h.split(";")[0].split("=", 1) for h in write_chunked(name, value, max_age=60, secure=secure(name))]
    theirs = node.ok("chunk", name=name, value=value, secure=secure(name))["cookies"]
    assert [[c["name"], c["value"]] for c in theirs] == ours
    assert "".join(v for _n, v in ours) == value


def test_shrinking_deletes_the_same_old_chunks_as_authjs(node: JwtTool) -> None:
    assert CHUNK_SIZE == AUTHJS_CHUNK
    big = "x" * (3 * AUTHJS_CHUNK + 10)
    old = [h.split(";")[0].split("=", 1) for h in write_chunked(NAME, big, max_age=60, secure=False)]
    cookie = "; ".join(f"{n}={v}" for n, v in old)
    for value in ("small", "y" * (AUTHJS_CHUNK + 5)):
        theirs = node.ok("chunk", name=NAME, value=value, cookie=cookie)["cookies"]
        their_deleted = {c["name"] for c in theirs if c.get("maxAge") == 0 and not c["value"]}
        their_kept = [(c["name"], c["value"]) for c in theirs if c["value"]]
        ours = write_chunked(NAME, value, max_age=60, secure=False, present=[n for n, _ in old])
        our_deleted = {h.split("=", 1)[0] for h in ours if "Max-Age=0" in h}
        our_kept = [tuple(h.split(";")[0].split("=", 1)) for h in ours if "Max-Age=0" not in h]
        assert our_kept == their_kept
        assert our_deleted == their_deleted - {n for n, _ in their_kept}


@pytest.mark.parametrize("name", [NAME, SECURE_NAME])
def test_big_tokens_chunked_both_ways(node: JwtTool, kind: str, clock: Clock, name: str) -> None:
    groups = [f"group-{i:04d}-{'g' * 20}" for i in range(400)]
    token = user_token(groups=groups)
    # Ours -> chunked by us -> @auth/core's getToken joins the chunks (sent in a shuffled order).
    ours_jwt = store(NEW).encode(token, name)
    headers = write_chunked(name, ours_jwt, max_age=60, secure=secure(name))
    assert len(headers) >= 3
    pairs = [h.split(";")[0] for h in headers]
    shuffled = "; ".join([pairs[-1], "unrelated=1", *pairs[:-1]])
    answer = node.ok("getToken", secret=NEW, secureCookie=secure(name), cookie=shuffled)
    assert answer["payload"] is not None and without_registered(answer["payload"]) == token

    # @auth/core's encode -> chunked by @auth/core's SessionStore -> read by us.
    node_jwt = node.ok("encode", token=token, secret=NEW, salt=name)["jwt"]
    chunks = node.ok("chunk", name=name, value=node_jwt, secure=secure(name))["cookies"]
    assert len(chunks) >= 3 and all(c["name"] == f"{name}.{i}" for i, c in enumerate(chunks))
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in reversed(chunks))
    value, present = read_chunked(parse_cookie_header(cookie), name)
    assert value == node_jwt and sorted(present) == sorted(c["name"] for c in chunks)
    payload = store(NEW).decode(value, name)
    assert payload is not None and without_registered(payload) == token
    harness = authjs_harness(kind, clock, https=secure(name))
    body = harness.client.get("/", headers={"cookie": cookie}).json()
    assert body["authenticated"] is True and body["id"] == "user-1" and body["access_token"] == "at-1"


def test_refresh_rewrites_an_authjs_chunked_cookie_that_authjs_reads(node: JwtTool, kind: str,
                                                                     clock: Clock) -> None:
    """Auth.js wrote a big (chunked) session; our refresh writes it back, chunked, and
    @auth/core reads the new tokens and every field of its own."""
    fake = FakeLogto(clock=clock, access_token_ttl=30)  # inside the 60 s refresh leeway at once
    harness = authjs_harness(kind, clock, fake=fake)
    callback = harness.sign_in("alice")
    ours = store(NEW).decode(callback.cookies[NAME], NAME)
    assert ours is not None
    groups = [f"group-{i:04d}-{'g' * 20}" for i in range(300)]
    token = {**without_registered(ours), "groups": groups}
    jwt = node.ok("encode", token=token, secret=NEW, salt=NAME)["jwt"]
    chunks = node.ok("chunk", name=NAME, value=jwt)["cookies"]
    assert len(chunks) >= 2

    browser = harness.browser()
    response = browser.get("/", headers={"cookie": "; ".join(f"{c['name']}={c['value']}" for c in chunks)})
    assert response.json()["authenticated"] is True
    assert fake.counts["token:refresh_token"] == 1
    new_access_token = response.json()["access_token"]
    assert new_access_token != ours["access_token"]
    written = [n for n, v, attrs in set_cookies(response) if v and "Max-Age=0" not in attrs]
    assert len(written) >= 2 and written == [f"{NAME}.{i}" for i in range(len(written))]

    seen = node.ok("getToken", secret=NEW, secureCookie=False, cookie=session_cookie_header(response))["payload"]
    assert seen is not None
    assert seen["access_token"] == new_access_token and seen["refresh_token"]
    assert seen["groups"] == groups and seen["sub"] == ours["sub"]
    assert seen["expires_at"] > now()


# -- secret rotation ------------------------------------------------------------------------------

ROTATIONS = [[NEW, OLD], [NEW], [OLD], [OLD, NEW]]


def test_secret_rotation_both_ways(node: JwtTool) -> None:
    """A token is valid exactly when the secret that encrypted it (the first of the writer's list) is
    anywhere in the reader's list: old secret listed second is accepted, removed is refused."""
    tokens: list[tuple[str, list[str], str]] = []
    for writer in ([NEW, OLD], [OLD], [NEW]):
        tokens.append(("authjs", writer, node.ok("encode", token=user_token(), secret=writer, salt=NAME)["jwt"]))
        tokens.append(("ours", writer, AuthJsCookieStore(writer).encode(user_token(), NAME)))
    ops = [{"op": "decode", "jwt": jwt, "secret": reader, "salt": NAME}
           for _who, _writer, jwt in tokens for reader in ROTATIONS]
    answers = iter(node.batch(ops))
    for who, writer, jwt in tokens:
        for reader in ROTATIONS:
            expected = writer[0] in reader
            answer = next(answers)
            context = f"{who} token by {writer}, read with {reader}"
            assert answer["ok"] is expected, (context, answer)
            assert ours_accepts(jwt, reader) is expected, context
            if expected:
                assert without_registered(answer["payload"]) == user_token(expires_at=answer["payload"]["expires_at"])


def test_rotation_through_the_middleware(node: JwtTool, kind: str, clock: Clock) -> None:
    old_cookie = node.ok("encode", token=user_token(), secret=OLD, salt=NAME)["jwt"]
    rotated = authjs_harness(kind, clock, secret=[NEW, OLD])
    assert rotated.client.get("/", headers={"cookie": f"{NAME}={old_cookie}"}).json()["authenticated"] is True
    removed = authjs_harness(kind, clock, secret=[NEW])
    response = removed.client.get("/", headers={"cookie": f"{NAME}={old_cookie}"})
    assert response.json()["authenticated"] is False
    assert any(n == NAME and "Max-Age=0" in attrs for n, _v, attrs in set_cookies(response))


def env_for(secret: str, **numbered: str) -> dict[str, str]:
    env = {"AUTH_LOGTO_ISSUER": "https://tenant.logto.app/oidc", "AUTH_LOGTO_ID": "id", "AUTH_LOGTO_SECRET": "s",
           "AUTH_SECRET": secret}
    env.update({f"AUTH_SECRET_{k.lstrip('_')}": v for k, v in numbered.items()})
    return env


@pytest.mark.parametrize("env", [
    pytest.param(env_for(NEW), id="AUTH_SECRET"),
    pytest.param(env_for(OLD, _1=NEW), id="AUTH_SECRET+1"),
    pytest.param(env_for(OTHER, _1=OLD, _2=NEW, _3="third-secret-0123456789-0123456789"), id="AUTH_SECRET+1..3"),
    pytest.param(env_for("A" * 32 + "," + "B" * 32), id="comma-in-AUTH_SECRET", marks=discrepancy(
        "we split AUTH_SECRET on commas; @auth/core's setEnvDefaults uses it whole")),
    pytest.param(env_for(OLD, _2=NEW), id="AUTH_SECRET_2-without-1"),
    pytest.param(env_for(OLD, _1=NEW, _2=NEW + "2", _3=NEW + "3", _4=NEW + "4"), id="AUTH_SECRET_4"),
])
def test_secrets_from_the_environment_in_authjs_order(node: JwtTool, env: dict[str, str]) -> None:
    theirs = node.ok("env", env=env)["secret"]
    assert list(LogtoConfig.from_env(env).secrets) == theirs


# -- A256GCM (Auth.js decodes it; nobody here writes it but jose) ----------------------------------


@pytest.mark.parametrize("name", [NAME, SECURE_NAME])
def test_a256gcm_tokens_are_read_like_authjs_reads_them(node: JwtTool, kind: str, clock: Clock, name: str) -> None:
    token = user_token()
    by_new, by_old = node.batch([
        {"op": "encodeGcm", "token": token, "secret": NEW, "salt": name},
        {"op": "encodeGcm", "token": token, "secret": OLD, "salt": name},
    ])
    assert header_of(by_new["jwt"]) == {"alg": "dir", "enc": "A256GCM", "kid": kid(NEW, name, "A256GCM")}
    no_kid = craft({"alg": "dir", "enc": "A256GCM"}, json.dumps(claims()).encode(), NEW, name)
    answers = node.batch([
        {"op": "decode", "jwt": by_new["jwt"], "secret": NEW, "salt": name},
        {"op": "decode", "jwt": by_old["jwt"], "secret": [NEW, OLD], "salt": name},
        {"op": "decode", "jwt": by_old["jwt"], "secret": NEW, "salt": name},
        {"op": "decode", "jwt": no_kid, "secret": [NEW, OLD], "salt": name},
        {"op": "decode", "jwt": no_kid, "secret": [OLD, NEW], "salt": name},
        {"op": "getToken", "secret": NEW, "secureCookie": secure(name), "cookie": f"{name}={by_new['jwt']}"},
    ])
    assert [a["ok"] for a in answers] == [True, True, False, True, False, True]
    assert [ours_accepts(by_new["jwt"], [NEW], name), ours_accepts(by_old["jwt"], [NEW, OLD], name),
            ours_accepts(by_old["jwt"], [NEW], name), ours_accepts(no_kid, [NEW, OLD], name),
            ours_accepts(no_kid, [OLD, NEW], name)] == [True, True, False, True, False]
    payload = store(NEW).decode(by_new["jwt"], name)
    assert payload == answers[0]["payload"] and without_registered(payload) == token
    harness = authjs_harness(kind, clock, https=secure(name))
    body = harness.client.get("/", headers={"cookie": f"{name}={by_new['jwt']}"}).json()
    assert body["authenticated"] is True and body["access_token"] == "at-1"


# -- refused tokens: expired, tampered, wrong secret, wrong salt ---------------------------------


def test_expiry_and_the_15_second_tolerance_both_ways(node: JwtTool, kind: str, clock: Clock) -> None:
    t = time.time()
    past = AuthJsCookieStore([NEW], clock=lambda: t - 100)
    tokens = {
        "authjs expired 20 s ago": (node.ok("encode", token=user_token(), secret=NEW, salt=NAME, maxAge=-20)["jwt"],
                                    False),
        "authjs expired 5 s ago": (node.ok("encode", token=user_token(), secret=NEW, salt=NAME, maxAge=-5)["jwt"],
                                   True),
        "ours expired 20 s ago": (past.encode(user_token(), NAME, max_age=80), False),
        "ours expired 5 s ago": (past.encode(user_token(), NAME, max_age=95), True),
    }
    answers = node.batch([{"op": "decode", "jwt": jwt, "secret": NEW, "salt": NAME} for jwt, _ in tokens.values()])
    for (label, (jwt, valid)), answer in zip(tokens.items(), answers, strict=True):
        assert answer["ok"] is valid, (label, answer)
        if not valid:
            assert "JWTExpired" in answer["error"], answer
        assert (store(NEW).decode(jwt, NAME) is not None) is valid, label
    expired = tokens["authjs expired 20 s ago"][0]
    assert node.ok("getToken", secret=NEW, cookie=f"{NAME}={expired}")["payload"] is None
    harness = authjs_harness(kind, clock)
    response = harness.client.get("/", headers={"cookie": f"{NAME}={expired}"})
    assert response.json()["authenticated"] is False
    assert any(n == NAME and "Max-Age=0" in attrs for n, _v, attrs in set_cookies(response))


def tampered(jwt: str) -> dict[str, str]:
    segments = jwt.split(".")
    variants = {}
    for index, label in enumerate(("header", "encrypted-key", "iv", "ciphertext", "tag")):
        changed = list(segments)
        segment = changed[index]
        if not segment:
            changed[index] = "AAAA"
        else:
            middle = len(segment) // 2
            changed[index] = segment[:middle] + ("B" if segment[middle] != "B" else "C") + segment[middle + 1:]
        variants[label] = ".".join(changed)
    variants["truncated"] = jwt[:-10]
    variants["four-segments"] = ".".join(segments[:4])
    variants["swapped-iv"] = ".".join([*segments[:2], b64(os.urandom(16)), *segments[3:]])
    return variants


def test_tampered_tokens_are_refused_both_ways(node: JwtTool, kind: str, clock: Clock) -> None:
    sources = {"authjs": node.ok("encode", token=user_token(), secret=NEW, salt=NAME)["jwt"],
               "ours": store(NEW).encode(user_token(), NAME)}
    cases = [(f"{who} {label}", bad) for who, jwt in sources.items() for label, bad in tampered(jwt).items()]
    answers = node.batch([{"op": "decode", "jwt": bad, "secret": NEW, "salt": NAME} for _label, bad in cases])
    for (label, bad), answer in zip(cases, answers, strict=True):
        assert answer["ok"] is False, (label, answer)
        assert store(NEW).decode(bad, NAME) is None, label
    harness = authjs_harness(kind, clock)
    for label, bad in cases[:5]:
        assert harness.client.get("/", headers={"cookie": f"{NAME}={bad}"}).json()["authenticated"] is False, label


def test_wrong_secret_is_refused_both_ways(node: JwtTool, kind: str, clock: Clock) -> None:
    theirs = node.ok("encode", token=user_token(), secret=OTHER, salt=NAME)["jwt"]
    ours = store(OTHER).encode(user_token(), NAME)
    answers = node.batch([
        {"op": "decode", "jwt": ours, "secret": [NEW, OLD], "salt": NAME},
        {"op": "getToken", "secret": [NEW, OLD], "cookie": f"{NAME}={ours}"},
        {"op": "getToken", "secret": [NEW, OLD], "authorization": f"Bearer {ours}"},
    ])
    assert answers[0]["ok"] is False and "no matching decryption secret" in answers[0]["error"]
    assert answers[1]["payload"] is None and answers[2]["payload"] is None
    assert store(NEW, OLD).decode(theirs, NAME) is None
    harness = authjs_harness(kind, clock, secret=[NEW, OLD])
    for headers in ({"cookie": f"{NAME}={theirs}"}, {"authorization": f"Bearer {theirs}"}):
        assert harness.client.get("/", headers=headers).json()["authenticated"] is False


def test_wrong_salt_is_refused_both_ways(node: JwtTool, kind: str, clock: Clock) -> None:
    """The cookie name is the HKDF salt: a token made for the other cookie name does not decrypt
    (and has another kid), whichever side made it."""
    theirs = node.ok("encode", token=user_token(), secret=NEW, salt=SECURE_NAME)["jwt"]
    ours = store(NEW).encode(user_token(), SECURE_NAME)
    custom = store(NEW).encode(user_token(), "my-app.session")
    answers = node.batch([
        {"op": "decode", "jwt": ours, "secret": NEW, "salt": NAME},
        {"op": "getToken", "secret": NEW, "secureCookie": False, "cookie": f"{NAME}={ours}"},
        {"op": "getToken", "secret": NEW, "secureCookie": True, "cookie": f"{SECURE_NAME}={custom}"},
        {"op": "decode", "jwt": ours, "secret": NEW, "salt": SECURE_NAME},
    ])
    assert answers[0]["ok"] is False
    assert answers[1]["payload"] is None and answers[2]["payload"] is None
    assert answers[3]["ok"] is True  # the same token with its own salt: fine
    assert store(NEW).decode(theirs, NAME) is None and store(NEW).decode(theirs, SECURE_NAME) is not None
    harness = authjs_harness(kind, clock)
    assert harness.client.get("/", headers={"cookie": f"{NAME}={theirs}"}).json()["authenticated"] is False


# -- tokens no Auth.js app writes: we must refuse what Auth.js refuses -----------------------------

CBC = {"alg": "dir", "enc": "A256CBC-HS512"}
# The payloads are made when the test runs (`claims` reads the clock), not when it is collected:
# a full suite on a loaded machine reaches these tests more than 10 minutes after collection,
# when tokens made then have expired, and both sides refusing an expired token "agreed" on
# zip-DEF (XPASS) while testing nothing.
ODD = [
    pytest.param(CBC, claims, id="no-kid"),
    pytest.param({**CBC, "kid": "unknown"}, claims, id="unknown-kid"),
    pytest.param({**CBC, "kid": kid(OLD)}, claims, id="kid-of-a-secret-not-used"),
    pytest.param({**CBC, "kid": kid(), "typ": "JWT"}, claims, id="typ"),
    pytest.param({**CBC, "kid": kid()}, lambda: claims(nbf=now() + 60), id="nbf-future"),
    pytest.param({**CBC, "kid": kid()}, lambda: claims(nbf=now() + 10), id="nbf-in-tolerance"),
    pytest.param({**CBC, "kid": kid()}, lambda: claims(exp="soon"), id="exp-not-a-number"),
    pytest.param({**CBC, "kid": kid()}, lambda: [1, 2], id="payload-not-an-object"),
    pytest.param({**CBC, "kid": kid(), "crit": ["x"], "x": 1}, claims, id="crit"),
    pytest.param({**CBC, "kid": kid(), "sub": "other"}, claims, id="replicated-sub-mismatch"),
    pytest.param({"alg": "dir", "enc": "A128CBC-HS256", "kid": kid()}, claims, id="enc-A128CBC-HS256"),
    pytest.param({"alg": "A256KW", "enc": "A256CBC-HS512", "kid": kid()}, claims, id="alg-A256KW"),
    pytest.param({**CBC, "kid": kid()}, lambda: claims(nbf="later"), id="nbf-not-a-number"),
    pytest.param({**CBC, "kid": kid()}, lambda: claims(iat="now"), id="iat-not-a-number"),
    pytest.param({**CBC, "kid": kid(), "zip": "DEF"}, claims, id="zip-DEF",
                 marks=discrepancy("@auth/core (jose 6) inflates zip=DEF; we refuse it (Auth.js never compresses)")),
    pytest.param({**CBC, "kid": kid()}, lambda: {"sub": "user-1"}, id="no-exp",
                 marks=discrepancy("@auth/core accepts a token without exp; we require one (Auth.js always sets it)")),
]


@pytest.mark.parametrize(("header", "make_payload"), ODD)
def test_same_verdict_as_authjs_on_unusual_tokens(node: JwtTool, header: dict[str, Any],
                                                  make_payload: Callable[[], Any]) -> None:
    jwt = craft(header, json.dumps(make_payload()).encode())
    theirs = node.run("decode", jwt=jwt, secret=[NEW], salt=NAME)
    assert ours_accepts(jwt, [NEW]) is theirs["ok"], theirs


# -- CSRF cookie ----------------------------------------------------------------------------------


@pytest.mark.parametrize("secrets", [[NEW], [NEW, OLD]], ids=["one-secret", "rotation"])
def test_csrf_cookie_matches_authjs(node: JwtTool, secrets: list[str]) -> None:
    signer = AuthJsCsrfSigner(secrets)
    made = node.ok("csrf", secret=secrets)
    token, _, digest = made["cookie"].partition("|")
    assert token == made["csrfToken"] and signer.verify(token, digest)
    mine = "f" * 64
    checked = node.ok("csrf", secret=secrets, cookieValue=f"{mine}|{signer.sign(mine)}", isPost=True, bodyValue=mine)
    assert checked["verified"] is True and checked["csrfToken"] == mine and checked.get("cookie") is None


@pytest.mark.parametrize("encoded", [
    pytest.param(False, id="raw"),
    # Auth.js writes the CSRF cookie URL-encoded (token%7Chash).
    pytest.param(True, id="as-authjs-serializes-it"),
])
def test_sign_out_accepts_the_csrf_cookie_authjs_set(node: JwtTool, kind: str, clock: Clock, encoded: bool) -> None:
    made = node.ok("csrf", secret=[NEW])
    value = made["cookie"]
    if encoded:
        header = node.ok("serializeCookie", name="authjs.csrf-token", value=value)["header"]
        value = header.split(";")[0].split("=", 1)[1]
        assert "%7C" in value
    harness = authjs_harness(kind, clock)
    jwt = node.ok("encode", token=user_token(), secret=NEW, salt=NAME)["jwt"]
    response = harness.client.post("/api/auth/signout", data={"csrfToken": made["csrfToken"]},
                                   headers={"cookie": f"authjs.csrf-token={value}; {NAME}={jwt}"})
    assert response.status_code == 302, response.text
    assert any(n == NAME and "Max-Age=0" in attrs for n, _v, attrs in set_cookies(response))
