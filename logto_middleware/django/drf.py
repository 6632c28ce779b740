"""Django REST framework authentication: the Logto cookie session, and Logto access tokens.

    REST_FRAMEWORK = {"DEFAULT_AUTHENTICATION_CLASSES": [
        "logto_middleware.django.drf.LogtoSessionAuthentication",
        "logto_middleware.django.drf.LogtoBearerAuthentication",
    ]}
    LOGTO_BEARER = {"audience": "https://api.example.com"}  # BearerValidator's keyword arguments

Importing this module needs djangorestframework.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication

from ..bearer import BearerError, BearerValidator
from .conf import options_from_settings

__all__ = ["LogtoBearerAuthentication", "LogtoSessionAuthentication"]


class _ProviderUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "the provider's keys cannot be fetched"
    default_code = "temporarily_unavailable"


class LogtoSessionAuthentication(SessionAuthentication):
    """The user of the Logto session cookie (`LogtoMiddleware` must be installed): the linked
    Django `User` with contrib.auth, else the `LogtoUser`; `request.auth` is the session. A
    cookie is sent by the browser on its own, so unsafe methods need Django's CSRF token, as
    DRF's `SessionAuthentication` asks. A request with `Authorization: Bearer` is not this
    class's, whatever the order of the classes: the token decides (`LogtoBearerAuthentication`),
    a bad one is never passed on as the cookie's user."""

    def authenticate(self, request: Any) -> tuple[Any, Any] | None:
        django_request = request._request
        if _is_bearer(django_request.headers.get("authorization", "")):
            return None
        session = getattr(django_request, "logto_session", None)
        if session is None:
            return None
        user = getattr(django_request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        self.enforce_csrf(request)
        return user, session

    def authenticate_header(self, request: Any) -> str | None:
        # A bearer token refused by the next class: DRF asks the first class for the challenge;
        # the token's (a 401), not a cookie's none (which DRF turns into a 403).
        return _CHALLENGE if _is_bearer(request._request.headers.get("authorization", "")) else None


_CHALLENGE = 'Bearer realm="api"'


def _is_bearer(authorization: str) -> bool:
    return authorization.partition(" ")[0].lower() == "bearer"


_lock = threading.Lock()
_validators: dict[str, BearerValidator] = {}


def _clear(**kwargs: Any) -> None:
    if kwargs.get("setting") in ("LOGTO", "LOGTO_BEARER"):
        with _lock:
            _validators.clear()


setting_changed.connect(_clear)


class LogtoBearerAuthentication(BaseAuthentication):
    """`Authorization: Bearer <access token>`, verified by a `BearerValidator` (the class
    attribute `validator`, else one made from `settings.LOGTO_BEARER`, its keyword arguments,
    with the issuer of the `LOGTO` settings by default). `request.user` is the token's
    `AccessTokenUser` (`id`, `scopes`, `organization_id`, `claims`); `request.auth` the token.
    No bearer token: not this class's request. A bad one: 401 with `WWW-Authenticate`."""

    validator: BearerValidator | None = None
    required_scopes: tuple[str, ...] = ()

    def get_validator(self) -> BearerValidator:
        if self.validator is not None:
            return self.validator
        with _lock:
            validator = _validators.get("default")
            if validator is None:
                options = dict(getattr(settings, "LOGTO_BEARER", None) or {})
                issuer = options.pop("issuer", None) or options_from_settings().config.issuer
                validator = _validators["default"] = BearerValidator(issuer, **options)
            return validator

    def authenticate(self, request: Any) -> tuple[Any, Any] | None:
        header = request._request.headers.get("authorization", "")
        if not _is_bearer(header):
            return None
        validator = self.get_validator()
        try:
            user = validator.verify_sync(header, self.required_scopes)
        except BearerError as exc:
            if exc.status == 503:
                raise _ProviderUnavailable() from None
            if exc.status == 403:
                raise exceptions.PermissionDenied(exc.description) from None
            raise exceptions.AuthenticationFailed(exc.description) from None
        return user, validator.token_from(header)

    def authenticate_header(self, request: Any) -> str:
        return _CHALLENGE
