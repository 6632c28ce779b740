"""Views of the Django tests."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, JsonResponse
from django.urls import path
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response as DRFResponse
from rest_framework.views import APIView

from logto_middleware.django.decorators import login_required as logto_login_required
from logto_middleware.django.decorators import requires_fresh_auth
from logto_middleware.django.drf import LogtoBearerAuthentication, LogtoSessionAuthentication


def whoami(request: HttpRequest) -> JsonResponse:
    user: Any = request.user
    session = getattr(request, "logto_session", None)
    return JsonResponse({"authenticated": bool(user.is_authenticated), "type": user.__class__.__name__,
                         "username": getattr(user, "username", None), "id": str(getattr(user, "id", "")),
                         "logto_id": getattr(request, "logto_user", None) and request.logto_user.id,  # type: ignore[attr-defined]
                         "session": session is not None})


@login_required
def protected(request: HttpRequest) -> JsonResponse:
    return whoami(request)


@logto_login_required
def page(request: HttpRequest) -> JsonResponse:
    return whoami(request)


@requires_fresh_auth(300)
def fresh(request: HttpRequest) -> JsonResponse:
    return whoami(request)


@requires_fresh_auth(300)
async def async_fresh(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"fresh": True})


@permission_required("auth.view_user", raise_exception=True)
def staff_only(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


def token(request: HttpRequest) -> JsonResponse:
    session: Any = getattr(request, "logto_session", None)
    return JsonResponse({"token": session.get_access_token()})


async def async_token(request: HttpRequest) -> JsonResponse:
    session: Any = getattr(request, "logto_session", None)
    user = await request.auser()  # type: ignore[attr-defined]
    return JsonResponse({"token": await session.get_access_token(), "authenticated": user.is_authenticated})


class ItemsView(APIView):
    # The bearer class first: DRF answers 401 with its `WWW-Authenticate` (the first class's).
    authentication_classes = (LogtoBearerAuthentication, LogtoSessionAuthentication)
    permission_classes = (IsAuthenticated,)

    def get(self, request: Any) -> DRFResponse:
        user = request.user
        return DRFResponse({"type": user.__class__.__name__, "id": str(user.id),
                            "auth": request.auth.__class__.__name__})

    def post(self, request: Any) -> DRFResponse:
        return DRFResponse({"posted": True})


class SessionFirstView(ItemsView):
    # The cookie's class first: a bearer token must still decide the request it comes with.
    authentication_classes = (LogtoSessionAuthentication, LogtoBearerAuthentication)


urlpatterns = [
    path("drf/items", ItemsView.as_view()),
    path("drf/session-first", SessionFirstView.as_view()),
    path("", whoami),
    path("protected", protected),
    path("page", page),
    path("fresh", fresh),
    path("async-fresh", async_fresh),
    path("staff", staff_only),
    path("token", token),
    path("async-token", async_token),
]
