"""The Django example's pages: home, a protected profile (`login_required`) and `/api/me`."""

from __future__ import annotations

from typing import Any

import common
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import get_script_prefix, path

FRAMEWORK = "Django"


def _html(body: str) -> HttpResponse:
    return HttpResponse(body, headers=common.NO_STORE)


def _root() -> str:
    """The prefix the app is served under (`SCRIPT_NAME`, `FORCE_SCRIPT_NAME`), for the pages' links."""
    return str(get_script_prefix()).rstrip("/")


def home(request: HttpRequest) -> HttpResponse:
    return _html(common.home_page(request.logto_user, FRAMEWORK, root=_root()))


@login_required  # type: ignore[untyped-decorator]  # request.user: the Django User linked to Logto's
def profile(request: HttpRequest) -> HttpResponse:
    session: Any = request.logto_session
    return _html(common.profile_page(request.logto_user, session, FRAMEWORK, root=_root()))


def me(request: HttpRequest) -> JsonResponse:
    # An API answers 401, not a redirect to a sign-in page.
    session: Any = getattr(request, "logto_session", None)
    if session is None:
        return JsonResponse(common.UNAUTHORIZED, status=401, headers=common.NO_STORE)
    payload = common.me_payload(request.logto_user, session)
    payload["django_user"] = {"username": request.user.get_username(), "id": request.user.pk}
    payload["access_token_fresh"] = bool(session.get_access_token())  # refreshed when due
    return JsonResponse(payload, headers=common.NO_STORE)


urlpatterns = [path("", home), path("profile", profile), path("api/me", me)]
