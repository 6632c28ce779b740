"""Starlette's authentication protocol, without Starlette.

Starlette's `@requires` reads only `request.auth.scopes`, its `AuthenticationMiddleware` puts
whatever its backend answers on the scope, and templates read `user.is_authenticated`,
`display_name` and `identity`: nothing checks a class. These two bases give our users and
credentials that shape, so a WSGI or Django app never imports Starlette (the same names and
signatures as `starlette.authentication`'s, for readers who know those).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["AuthCredentials", "BaseUser"]


class BaseUser:
    """A user as Starlette sees one: `is_authenticated`, `display_name`, `identity`."""

    @property
    def is_authenticated(self) -> bool:
        raise NotImplementedError  # pragma: no cover

    @property
    def display_name(self) -> str:
        raise NotImplementedError  # pragma: no cover

    @property
    def identity(self) -> str:
        raise NotImplementedError  # pragma: no cover


class AuthCredentials:
    """`request.auth` as Starlette's `requires(...)` reads it: the granted `scopes`."""

    def __init__(self, scopes: Sequence[str] | None = None) -> None:
        self.scopes: list[str] = [] if scopes is None else list(scopes)
