"""Refresh coordinated across worker processes and hosts.

Logto rotates refresh tokens (a public client's on every use, a confidential client's once 70%
of its life has passed) and revokes the whole grant when a spent one comes back, with no grace.
So the tokens of one session must be refreshed once, whichever process a request lands on.
Inside a process the refresher's single flight sees to that; across processes this module does,
with two things named by a keyed hash of the tokens being replaced:

- a **lock**: the first process to take it runs the grant;
- a **record** of the outcome, encrypted with the app's secret and kept for the grace window:
  the processes that lost the race wait for it and take the rotated tokens from it, as does a
  request that still carries the old cookie moments later.

`RefreshLock` is the protocol: four operations that every `SessionStore` has, so a `RedisStore`
coordinates the hosts of an app (`AUTH_REFRESH_LOCK=redis://...`), and `DirectoryLock`, the
default, coordinates the worker processes of one host with files in a private directory: nothing
to run (uvicorn `--workers`, gunicorn, hypercorn).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from ._sessions.cipher import Cipher, Signer
from .errors import OAuthError, ProviderUnavailable, StoreUnavailable, TokenValidationError
from .flow import Flow, Sleep, returns
from .session import SessionData

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; coordination across processes is off
    fcntl = None  # type: ignore[assignment]

__all__ = ["DirectoryLock", "RefreshCoordinator", "RefreshLock", "default_lock_directory", "lock_from_setting"]

log = logging.getLogger("logto_middleware")


@runtime_checkable
class RefreshLock(Protocol):
    """Where processes coordinate: a lock and short-lived records, each operation a flow (see
    `logto_middleware.flow`). Every `SessionStore` is one."""

    def get(self, key: str) -> Flow[bytes | None]:
        """The record stored under `key`, or None when absent or expired."""
        ...

    def set(self, key: str, value: bytes, ttl: int, tags: Sequence[str] = ()) -> Flow[None]:
        """Store the record `value` under `key` for `ttl` seconds (`tags` unused here)."""
        ...

    def acquire_lock(self, name: str, owner: str, ttl: float) -> Flow[bool]:
        """Take the lock `name` unless someone holds it; True when taken. A holder that dies
        must not keep it for longer than `ttl` seconds."""
        ...

    def release_lock(self, name: str, owner: str) -> Flow[None]:
        """Release `name` if `owner` holds it."""
        ...


def default_lock_directory() -> Path:
    """A directory private to this OS user: `$XDG_RUNTIME_DIR/logto-middleware` when set (a
    per-user tmpfs on systemd hosts), else `<tmp>/logto-middleware-<uid>`."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "logto-middleware"
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"logto-middleware-{uid}"


# Names become file names: what they may contain (ours are `refresh:<hex>`).
_SAFE_NAME = re.compile(r"[A-Za-z0-9:_-]{1,128}").fullmatch


class DirectoryLock:
    """`RefreshLock` on the local filesystem, for the processes of one host.

    A lock is an `flock` on a file: the kernel releases it when its holder dies, so there is no
    stale lock to expire. A record is a file replaced atomically, its expiry inside. The
    directory is created with mode 0700 and refused if another user owns it or can write to it.
    Files older than `max_age` are pruned from time to time.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, *,
                 clock: Callable[[], float] = time.time, max_age: float = 600.0) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            raise OSError(errno.ENOTSUP, "DirectoryLock needs flock (POSIX)")
        self.directory = Path(directory) if directory else default_lock_directory()
        self._clock = clock
        self._max_age = max_age
        self._held: dict[tuple[str, str], int] = {}  # (lock name, owner) -> file descriptor
        self._mutex = threading.Lock()
        self._checked = False
        self._pruned_at = float("-inf")

    def _path(self, name: str, suffix: str) -> Path:
        if not _SAFE_NAME(name):
            name = hashlib.sha256(name.encode()).hexdigest()
        if not self._checked:
            self._prepare()
        return self.directory / (name.replace(":", "-") + suffix)

    def _prepare(self) -> None:
        """Create the directory (0700) or check that only this user can use it."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.directory.stat()
        except OSError as exc:
            raise StoreUnavailable(f"refresh lock directory: {type(exc).__name__}") from None
        if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o022):
            raise StoreUnavailable(f"refresh lock directory {self.directory} belongs to another user "
                                   "or is writable by others")
        self._checked = True

    def get(self, key: str) -> Flow[bytes | None]:
        path = self._path(key, ".record")
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return returns(None)
        except OSError as exc:
            raise StoreUnavailable(f"refresh record: {type(exc).__name__}") from None
        expiry, _, value = raw.partition(b"\n")
        try:
            if float(expiry) <= self._clock():
                return returns(None)
        except ValueError:
            return returns(None)
        return returns(value)

    def set(self, key: str, value: bytes, ttl: int, tags: Sequence[str] = ()) -> Flow[None]:
        path = self._path(key, ".record")
        temporary = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(b"%f\n" % (self._clock() + ttl) + value)
            os.replace(temporary, path)  # readers see the old record or the new one, never half
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise StoreUnavailable(f"refresh record: {type(exc).__name__}") from None
        self._prune()
        return returns(None)

    def acquire_lock(self, name: str, owner: str, ttl: float) -> Flow[bool]:
        path = self._path(name, ".lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreUnavailable(f"refresh lock: {type(exc).__name__}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Pruning may have unlinked the file between our open and our lock: a lock on a file
            # that is no longer at `path` locks nothing the others can see.
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                raise BlockingIOError
        except OSError:
            os.close(fd)
            return returns(False)
        with self._mutex:
            self._held[(name, owner)] = fd
        return returns(True)

    def release_lock(self, name: str, owner: str) -> Flow[None]:
        with self._mutex:
            fd = self._held.pop((name, owner), None)
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock
        return returns(None)

    def _prune(self) -> None:
        """Remove records and locks older than `max_age`, at most once a minute."""
        now = self._clock()
        if now - self._pruned_at < 60:
            return
        self._pruned_at = now
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return
        for entry in entries:
            try:
                if now - entry.stat().st_mtime > self._max_age:
                    os.unlink(entry.path)
            except OSError:
                continue  # gone already, or not ours to remove


def lock_from_setting(setting: str) -> RefreshLock | None:
    """The `RefreshLock` that `AUTH_REFRESH_LOCK` names: "" for the default directory, "off" for
    none, a Redis URL (`redis://`, `rediss://`, `unix://`, `redis+cluster://`, `redis+sentinel://`
    and their `rediss+` forms: see `RedisStore.from_url`), or a directory."""
    if setting == "off":
        return None
    if setting:  # the default ("") never loads the Redis store's module (nor asyncio with it)
        from .stores.redis import REDIS_SCHEMES, RedisStore

        if setting.lower().startswith(REDIS_SCHEMES):
            return RedisStore.from_url(setting)
    if fcntl is None:  # pragma: no cover - Windows
        log.warning("refresh coordination across processes needs flock: it is off on this platform")
        return None
    return DirectoryLock(setting or None)


class RefreshCoordinator:
    """Runs one refresh grant across processes: the holder of the lock runs it and records the
    outcome; the others wait and take it from the record."""

    def __init__(self, lock: RefreshLock, secrets_: Sequence[str], *, record_ttl: int = 60,
                 lock_ttl: float = 15.0, wait: float = 15.0, poll: float = 0.02) -> None:
        self.lock = lock
        self._cipher = Cipher(secrets_, "refresh record")
        # Names are a keyed hash of the tokens: a name says nothing about them, even to someone
        # who can list the directory or the Redis keys.
        self._names = Signer(secrets_, "refresh lock name")
        self._record_ttl, self._lock_ttl, self._wait, self._poll = record_ttl, lock_ttl, wait, poll

    def name(self, key: Hashable) -> str:
        """The lock and record name of one refresh (`key`: the tokens it replaces, see `refresh_key`)."""
        text = "\x00".join("" if part is None else str(part) for part in key) if isinstance(key, tuple) else str(key)
        return "refresh:" + self._names.sign(text)[:40]

    def run(self, key: Hashable, data: SessionData,
            grant: Callable[[SessionData], Flow[SessionData]]) -> Flow[SessionData]:
        """`grant(data)` once across processes for `key`; its outcome here and in every process
        that asks for the same `key` within the record's lifetime. Falls back to the grant alone
        (with a warning) when the lock cannot be used at all."""
        name = self.name(key)
        owner = secrets.token_hex(8)
        deadline = time.monotonic() + self._wait  # real time: the app's clock may be a test's
        while True:
            try:
                recorded = yield from self._read(name)
                if recorded is not None:
                    return recorded
                taken = yield from self.lock.acquire_lock(name, owner, self._lock_ttl)
            except StoreUnavailable as exc:
                log.warning("refresh lock unavailable, refreshing without it: %s", exc)
                return (yield from grant(data))
            if taken:
                try:
                    # The previous holder may have recorded its outcome just before we got here.
                    recorded = yield from self._read(name)
                    if recorded is not None:
                        return recorded
                    try:
                        refreshed = yield from grant(data)
                    except (OAuthError, TokenValidationError) as exc:
                        # The tokens are spent (refused, or answered with an ID token that failed
                        # its checks): the others must not present them again.
                        code = exc.error if isinstance(exc, OAuthError) else "invalid_id_token"
                        yield from self._write(name, {"error": code})
                        raise
                    yield from self._write(name, {"session": refreshed.to_json().decode()})
                    return refreshed
                finally:
                    yield from self._release(name, owner)
            if time.monotonic() >= deadline:
                raise ProviderUnavailable("another process is still refreshing these tokens")
            yield Sleep(self._poll)

    def _release(self, name: str, owner: str) -> Flow[None]:
        try:
            yield from self.lock.release_lock(name, owner)
        except StoreUnavailable as exc:
            # The outcome stands (and is recorded); the lock expires by itself (`lock_ttl`).
            log.warning("refresh lock not released: %s", exc)

    def _read(self, name: str) -> Flow[SessionData | None]:
        sealed = yield from self.lock.get(name)
        if sealed is None:
            return None
        plaintext = self._cipher.decrypt(sealed.decode("ascii", "replace"), name.encode())
        try:
            record = json.loads(plaintext) if plaintext is not None else None
        except ValueError:
            record = None
        if not isinstance(record, dict):
            return None  # not ours (another secret) or damaged: as if absent
        if isinstance(record.get("error"), str):
            raise OAuthError(record["error"], None)
        session = record.get("session")
        return SessionData.from_json(session.encode()) if isinstance(session, str) else None

    def _write(self, name: str, record: dict[str, str]) -> Flow[None]:
        sealed = self._cipher.encrypt(json.dumps(record).encode(), name.encode()).encode("ascii")
        try:
            yield from self.lock.set(name, sealed, self._record_ttl)
        except StoreUnavailable as exc:
            # The grant happened; the others will find no record and try theirs.
            log.warning("refresh record not written: %s", exc)
