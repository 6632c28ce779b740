"""A session's device: when it started, when it was last written, and which browser on which
system it came from ("Firefox on Linux"), as a user's list of devices shows it; and the opaque
handles that name a session in that list instead of its id (a bearer secret)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..session import SessionData
from .cipher import Signer

__all__ = ["UNKNOWN_BROWSER", "DeviceSession", "SessionHandles", "describe_user_agent", "device_of", "seen",
           "started"]

UNKNOWN_BROWSER = "Unknown browser"
# Kept in `SessionData.extra` (sessions without it, of earlier versions, still load; and earlier
# versions load sessions with it: `extra` is theirs to keep as it is).
_EXTRA = "device"
# A User-Agent header is at most a few hundred characters; what lies beyond is not read.
_MAX_USER_AGENT = 512

# Checked in order: the first token found names the browser. Browsers built on Chrome or Safari
# name those too (Edge says "Chrome/... Safari/... Edg/..."), so they come first; the iOS
# browsers (all Safari's engine) have tokens of their own.
_BROWSERS: tuple[tuple[str, str], ...] = (
    ("Edg/", "Edge"), ("EdgA/", "Edge"), ("EdgiOS/", "Edge"),
    ("OPR/", "Opera"), ("OPiOS/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("Vivaldi/", "Vivaldi"), ("YaBrowser/", "Yandex Browser"),
    ("Firefox/", "Firefox"), ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"), ("Chromium/", "Chromium"), ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
# iPhone and iPad say "like Mac OS X", Android says "Linux": the more precise first.
_SYSTEMS: tuple[tuple[str, str], ...] = (
    ("iPhone", "iPhone"), ("iPad", "iPad"), ("iPod", "iPod"),
    ("Android", "Android"),
    ("Windows", "Windows"),
    ("CrOS", "ChromeOS"),
    ("Macintosh", "macOS"), ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
)
_SAFARI_VERSION = re.compile(r"Version/\d")


def describe_user_agent(user_agent: str | None) -> str:
    """A short description of a browser's User-Agent header: "Firefox on Linux", "Safari on
    iPhone"; "Unknown browser" for anything else (an HTTP library, an empty header)."""
    text = (user_agent or "")[:_MAX_USER_AGENT]
    if not text.startswith("Mozilla/5.0"):  # what every browser of the last 20 years sends first
        return UNKNOWN_BROWSER
    browser = next((name for token, name in _BROWSERS if token in text), None)
    if browser == "Safari" and not _SAFARI_VERSION.search(text):
        browser = None  # a web view or a bot that mentions Safari without being it
    if browser is None:
        return UNKNOWN_BROWSER
    system = next((name for token, name in _SYSTEMS if token in text), None)
    return f"{browser} on {system}" if system else browser


def started(data: SessionData, now: int, user_agent: str | None) -> SessionData:
    """`data` of a session signed in at `now` from a browser that sent `user_agent`."""
    device = {"created": now, "seen": now, "agent": describe_user_agent(user_agent)}
    return data.with_changes(extra={**data.extra, _EXTRA: device})


def seen(data: SessionData, now: int) -> SessionData:
    """`data` last written at `now` (a session of an earlier version gets the device it can)."""
    device = data.extra.get(_EXTRA)
    device = dict(device) if isinstance(device, dict) else {}
    if device.get("seen") == now:
        return data
    device["seen"] = now
    return data.with_changes(extra={**data.extra, _EXTRA: device})


@dataclass(frozen=True)
class DeviceSession:
    """One of a user's sessions, as their list of devices shows it. `handle` names it (an
    HMAC of its id: it reveals nothing of the id, which would sign anyone in); `created_at` and
    `last_seen_at` are seconds since the epoch, None when unknown (a session of an earlier
    version). `last_seen_at` is when the session was last written: at sign-in, on a refresh of
    its tokens and when its expiry rolls forward, so it is approximate to those intervals."""

    handle: str
    created_at: int | None
    last_seen_at: int | None
    description: str
    current: bool = False


def device_of(data: SessionData, handle: str, current: bool = False) -> DeviceSession:
    """What the list of devices shows of the session `data`, named by `handle`."""
    device = data.extra.get(_EXTRA)
    device = device if isinstance(device, dict) else {}
    created, last_seen, agent = device.get("created"), device.get("seen"), device.get("agent")
    return DeviceSession(handle=handle,
                         created_at=created if _timestamp(created) else None,
                         last_seen_at=last_seen if _timestamp(last_seen) else data.updated_at,
                         description=agent if isinstance(agent, str) and agent else UNKNOWN_BROWSER,
                         current=current)


def _timestamp(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class SessionHandles:
    """Handles of session ids: HMAC-SHA256 under a key derived for this purpose, so a handle
    cannot be turned back into an id, nor made for an id one does not have. A handle made with
    an earlier secret (`secrets` rotated) still matches."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._signer = Signer(secrets, "session handle")

    def handle(self, session_id: str) -> str:
        return self._signer.sign(session_id)

    def matches(self, session_id: str, handle: str) -> bool:
        return self._signer.verify(session_id, handle)
