"""`LogtoMiddleware`: Logto sign-in inside Django (sync and async), mirroring `wsgi.py`/`asgi.py`:
request in -> driver.run(core.handle(request)) -> our response, or the view with the user and
the session, and the Set-Cookie headers added on the way out."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from http.cookies import Morsel
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from .._core.handler import LogtoCore, Passage
from .._messages import Request, Response, url_root
from ..bearer import AccessTokenUser
from ..flow import AsyncDriver, SyncDriver
from .conf import options_from_settings
from .session import DjangoSession

__all__ = ["LogtoMiddleware"]

MAX_BODY = 64 * 1024


class LogtoMiddleware:
    """Serves the routes under `base_path` and puts, on every request, `request.logto_user`
    (a `LogtoUser` or `AnonymousUser`), `request.logto_session` (a `DjangoSession` or None) and
    `request.user`: with `django.contrib.auth` installed the Django `User` linked to the Logto
    user (see `backends.LogtoBackend`), resolved lazily; without it the `LogtoUser` itself."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        options = options_from_settings()
        self.config = config = options.config
        runtime = options.runtime
        clock: Callable[[], float] = runtime.get("clock", time.time)
        self.sync_driver: SyncDriver | None = None
        self.async_driver: AsyncDriver | None = None
        # One world per middleware chain: Django builds an async chain under ASGI (and for its
        # AsyncClient), a sync one under WSGI; the other world's calls cross over with asgiref.
        run: Callable[..., Any]
        arun: Callable[..., Awaitable[Any]]
        if self.is_async:
            # The driver makes its HTTP client (and imports httpx) on the first provider call.
            self.async_driver = AsyncDriver(runtime.get("async_http_client"), timeout=config.http_timeout,
                                            deadline=config.call_deadline)
            run, arun = async_to_sync(self.async_driver.run), self.async_driver.run
        else:
            self.sync_driver = SyncDriver(runtime.get("http_client"), timeout=config.http_timeout,
                                          deadline=config.call_deadline)
            run, arun = self.sync_driver.run, sync_to_async(self.sync_driver.run)
        self.core = LogtoCore(config, store=runtime.get("store"), clock=clock,
                              session_factory=partial(DjangoSession, profile=config.profile, run=run, arun=arun))
        if not self.is_async:
            self.core.user_code.require_sync()
        self.link_users = apps.is_installed("django.contrib.auth")
        _check_order(list(getattr(settings, "MIDDLEWARE", None) or ()))

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        assert self.sync_driver is not None
        logto_request = _neutral_request(request, self.core)
        if isinstance(logto_request, Response):
            return _django_response(logto_request)
        try:
            outcome = self.sync_driver.run(self.core.handle(logto_request))
        except Exception as exc:
            outcome = self.core.fail_closed(exc, logto_request)
        if isinstance(outcome, Response):
            return _django_response(outcome)
        self._attach(request, outcome, logto_request.root)
        response = self.get_response(request)
        if outcome.session is None and not outcome.may_write:
            return response
        cookies = outcome.finish_without_io()
        if cookies is None:
            cookies = self.sync_driver.run(outcome.finish())
        return _with_cookies(response, cookies)

    async def __acall__(self, request: HttpRequest) -> Any:
        assert self.async_driver is not None
        logto_request = _neutral_request(request, self.core)
        if isinstance(logto_request, Response):
            return _django_response(logto_request)
        try:
            outcome = await self.async_driver.run(self.core.handle(logto_request))
        except Exception as exc:
            outcome = self.core.fail_closed(exc, logto_request)
        if isinstance(outcome, Response):
            return _django_response(outcome)
        self._attach(request, outcome, logto_request.root)
        response = await self.get_response(request)
        if outcome.session is None and not outcome.may_write:
            return response
        cookies = outcome.finish_without_io()
        if cookies is None:
            cookies = await self.async_driver.run(outcome.finish())
        return _with_cookies(response, cookies)

    def _attach(self, request: HttpRequest, passage: Passage, root: str) -> None:
        request.logto_user = passage.user
        request.logto_session = passage.session
        request.logto_base_path = root + self.config.base_path  # on the site: Django's script prefix first
        if self.link_users:
            from .users import attach_django_user

            # This core has no bearer validator (DRF's `LogtoBearerAuthentication` serves tokens):
            # its user is a session's or anonymous.
            assert not isinstance(passage.user, AccessTokenUser)
            attach_django_user(request, passage.user, self.config.issuer)
        else:
            request.user = passage.user


_AUTHENTICATION = "django.contrib.auth.middleware.AuthenticationMiddleware"


def _check_order(middleware: list[str]) -> None:
    """Django's `AuthenticationMiddleware` after ours would put its own user back on
    `request.user` (anonymous for a Logto session): refused at start-up, not found in production."""
    ours = next((i for i, path in enumerate(middleware) if path.endswith(".LogtoMiddleware")), None)
    if ours is not None and _AUTHENTICATION in middleware[ours:]:
        raise ImproperlyConfigured("logto_middleware.django.LogtoMiddleware must come after "
                                   f"{_AUTHENTICATION} in MIDDLEWARE (it sets request.user for Logto sessions)")


def _neutral_request(request: HttpRequest, core: LogtoCore) -> Request | Response:
    """The request for the core (the path within the app, and Django's script prefix as its root,
    so the redirect_uri and every redirect keep it), or a 413 for an oversized POST to a route."""
    meta = request.META
    scheme = request.scheme or "http"
    # Without a Host header (Django's test client sends none), the server's name: its port only
    # when it is not the scheme's own.
    server, port = str(meta.get("SERVER_NAME", "localhost")), str(meta.get("SERVER_PORT", ""))
    if port and port != {"http": "80", "https": "443"}.get(scheme):
        server += ":" + port
    # `path_info` is the path within the app; the rest of `path` is Django's script prefix
    # (`SCRIPT_NAME` from the server, or `FORCE_SCRIPT_NAME`), the app's root as in wsgi.py.
    script_prefix = request.path[:len(request.path) - len(request.path_info)]
    neutral = Request(method=(request.method or "GET").upper(), path=request.path_info,
                      query_string=meta.get("QUERY_STRING", ""), headers=_Headers(request.headers),
                      scheme=scheme, server=server, root=url_root(script_prefix) if script_prefix else "")
    if neutral.method == "POST" and core.is_route(neutral.path):
        try:
            length = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY:
            return Response.json({"error": "PayloadTooLarge"}, 413)
        neutral = neutral.with_body(request.body)
    return neutral


class _Headers(Mapping[str, str]):
    """Django's `request.headers` (case-insensitive), as the lower-case mapping the core reads."""

    __slots__ = ("_headers",)

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = headers

    def get(self, name: str, default: Any = None) -> Any:
        value = self._headers.get(name)
        return value if value else default

    def __getitem__(self, name: str) -> str:
        return self._headers[name]

    def __iter__(self) -> Any:
        return (name.lower() for name in self._headers)

    def __len__(self) -> int:
        return len(self._headers)


class _RawMorsel(Morsel[str]):
    """A Set-Cookie header made by the package, kept exactly as it is (attributes included) on
    `response.cookies`, where Django's handlers and its test client read cookies from."""

    _header = ""

    def OutputString(self, attrs: Any = None) -> str:  # Morsel's name
        return self._header


def _with_cookies(response: HttpResponseBase, cookies: Iterable[str]) -> HttpResponseBase:
    for header in cookies:
        name, _, rest = header.partition("=")
        value = rest.split(";", 1)[0]
        morsel = _RawMorsel()
        morsel.set(name, value, value)
        morsel._header = header
        response.cookies[name] = morsel
    return response


def _django_response(response: Response) -> HttpResponse:
    django_response = HttpResponse(response.body, status=response.status)
    cookies = []
    for name, value in response.headers:
        if name.lower() == "set-cookie":
            cookies.append(value)
        else:
            django_response.headers[name] = value
    _with_cookies(django_response, cookies)
    return django_response
