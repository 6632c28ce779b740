"""`login_required` for projects without `django.contrib.auth` (Django's own imports the auth
views, hence the `User` model, to redirect): pages go to our sign-in and come back, JSON
requests get a 401. With contrib.auth, Django's `login_required` works as well."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseRedirect, JsonResponse

from ..helpers import signin_url

__all__ = ["login_required"]

F = TypeVar("F", bound=Callable[..., Any])


def _refusal(request: HttpRequest) -> Any:
    user = getattr(request, "user", None) or getattr(request, "logto_user", None)
    if user is not None and user.is_authenticated:
        return None
    if "application/json" in request.headers.get("accept", "") or request.content_type == "application/json":
        return JsonResponse({"error": "unauthorized"}, status=401, headers={"cache-control": "no-store"})
    base_path = getattr(request, "logto_base_path", "/api/auth")
    return HttpResponseRedirect(signin_url(request.get_full_path(), base_path=base_path))


def login_required(view: F) -> F:
    """Anonymous visitors of a page go to sign-in and come back; an API answers 401."""
    if iscoroutinefunction(view):
        @functools.wraps(view)
        async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            refusal = _refusal(request)
            return refusal if refusal is not None else await view(request, *args, **kwargs)

        return cast(F, async_wrapper)

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        refusal = _refusal(request)
        return refusal if refusal is not None else view(request, *args, **kwargs)

    return cast(F, wrapper)
