"""Where sessions live. The default keeps the whole session in an encrypted cookie."""

from .cookie import CookieStore

__all__ = ["CookieStore"]
