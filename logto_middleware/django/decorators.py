"""`login_required` for projects without `django.contrib.auth` (Django's own imports the auth
views, hence the `User` model, to redirect): pages go to our sign-in and come back, JSON
requests get a 401. With contrib.auth, Django's `login_required` works as well.
`requires_fresh_auth(seconds)` asks for a recent sign-in, with or without contrib.auth."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse

from .._protocol.freshness import require_max_age
from ..helpers import fresh_auth_refusal, signin_url

__all__ = ["login_required", "requires_fresh_auth"]

F = TypeVar("F", bound=Callable[..., Any])


def _refusal(request: HttpRequest) -> Any:
    user = getattr(request, "user", None) or getattr(request, "logto_user", None)
    if user is not None and user.is_authenticated:
        return None
    if _wants_json(request):
        return JsonResponse({"error": "unauthorized"}, status=401, headers={"cache-control": "no-store"})
    base_path = getattr(request, "logto_base_path", "/api/auth")
    return HttpResponseRedirect(signin_url(request.get_full_path(), base_path=base_path))


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("accept", "") or request.content_type == "application/json"


def login_required(view: F) -> F:
    """Anonymous visitors of a page go to sign-in and come back; an API answers 401."""
    return _guarded(view, _refusal)


def requires_fresh_auth(max_age: int) -> Callable[[F], F]:
    """A view decorator: the user must have signed in at Logto at most `max_age` seconds ago
    (the configured clock skew allowed). Otherwise a page goes to sign in again (`max_age` is
    sent to Logto, which asks for credentials) and comes back; a JSON request gets 401 with
    `WWW-Authenticate: Cookie error="insufficient_user_authentication", max_age="..."` (RFC 9470).

        @requires_fresh_auth(300)
        def delete_account(request): ...
    """
    require_max_age(max_age)

    def refusal(request: HttpRequest) -> Any:
        answer = fresh_auth_refusal(getattr(request, "logto_session", None), max_age, here=request.get_full_path(),
                                    base_path=getattr(request, "logto_base_path", "/api/auth"),
                                    page=not _wants_json(request))
        if answer is None:
            return None
        if answer.body is None:
            return HttpResponse(status=answer.status, headers=answer.headers)
        return JsonResponse(answer.body, status=answer.status, headers=answer.headers)

    return lambda view: _guarded(view, refusal)


def _guarded(view: F, refusal_of: Callable[[HttpRequest], Any]) -> F:
    """`view`, answering `refusal_of(request)` instead when it is not None."""
    if iscoroutinefunction(view):
        @functools.wraps(view)
        async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            refusal = refusal_of(request)
            return refusal if refusal is not None else await view(request, *args, **kwargs)

        return cast(F, async_wrapper)

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        refusal = refusal_of(request)
        return refusal if refusal is not None else view(request, *args, **kwargs)

    return cast(F, wrapper)
