"""Test helpers for apps using ``logto_middleware``.

``FakeLogto`` is an in-memory Logto provider for tests and local demos
(development only, never use in production).
"""

from .cli import main
from .provider import FakeLogto

__all__ = ["FakeLogto", "main"]
