"""Test helpers for apps using ``logto_middleware``.

``FakeLogto`` is an in-memory Logto provider for tests and local demos
(development only, never use in production).
"""

from .cli import main
from .provider import FakeLogto
from .session_cookie import make_session_cookie

__all__ = ["FakeLogto", "main", "make_session_cookie"]
