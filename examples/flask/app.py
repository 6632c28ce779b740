"""Sign in with Logto in a Flask app.

    python examples/flask/app.py            # waitress on HOST:PORT (default 127.0.0.1:3000)
    waitress-serve --call app:create_app    # from examples/flask

Configuration comes from the environment or a `.env` file in the current directory:
AUTH_LOGTO_ISSUER, AUTH_LOGTO_ID, AUTH_LOGTO_SECRET, AUTH_SECRET, and optionally AUTH_URL,
AUTH_TRUST_HOST, AUTH_REFRESH_LEEWAY, AUTH_SESSION_STORE (e.g. redis://127.0.0.1:6379/0),
AUTH_LOGTO_SCOPES and AUTH_LOGTO_RESOURCES. With an API resource configured the app also serves
a tiny example API at /example-api/items (access tokens of that resource with the scope
read:items) and calls it from /api-demo. `make demo-flask` runs it against a local development
provider.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
from flask import Flask, Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue

from logto_middleware import (
    AccessTokenUser,
    AnonymousUser,
    BearerValidator,
    LogtoConfig,
    LogtoConfigError,
    LogtoError,
    LogtoUser,
    SyncSession,
    requires_bearer,
)
from logto_middleware.flask import LogtoFlask, current_user, get_session, login_required

sys.path.append(str(Path(__file__).resolve().parents[1]))  # examples/, for the shared pages
import common

FRAMEWORK = "Flask"


def _html(body: str) -> Response:
    return Response(body, mimetype="text/html", headers=common.NO_STORE)


def _signed_in() -> tuple[LogtoUser, SyncSession]:
    """The user and session of a request that `login_required` let through."""
    user, session = current_user, get_session()
    assert isinstance(user, LogtoUser) and session is not None
    return user, session


def home() -> Response:
    user = current_user if isinstance(current_user, LogtoUser) else AnonymousUser()  # no bearer tokens here
    return _html(common.home_page(user, FRAMEWORK, root=request.script_root))


@login_required
def profile() -> ResponseReturnValue:
    user, session = _signed_in()
    return _html(common.profile_page(user, session, FRAMEWORK, root=request.script_root))


@login_required
def devices() -> ResponseReturnValue:
    user, _ = _signed_in()
    return _html(common.devices_page(user, FRAMEWORK, request.script_root))


def me() -> ResponseReturnValue:
    # An API answers 401, not a redirect to a sign-in page.
    user, session = current_user, get_session()
    if not isinstance(user, LogtoUser) or session is None:
        response, status = jsonify(common.UNAUTHORIZED), 401
    else:
        response, status = jsonify(common.me_payload(user, session)), 200
    response.headers.update(common.NO_STORE)
    return response, status


@login_required
def api_demo() -> ResponseReturnValue:
    """Get an access token for the example API's resource, call the API with it over HTTP, and
    switch organizations: everything on the server, the tokens never reach the browser."""
    user, session = _signed_in()
    demo = common.ApiDemo(current_app.config["EXAMPLE_API"], userinfo_scopes=common.userinfo_scopes_granted(session))
    if demo.api is not None:
        call_example_api(session, demo)
    if demo.userinfo_scopes:
        switch_organization(session, demo, request.args.get("organization"))
    return _html(common.api_demo_page(user, demo, FRAMEWORK, root=request.script_root))


def call_example_api(session: SyncSession, demo: common.ApiDemo) -> None:
    assert demo.api is not None
    try:
        token = session.get_access_token(resource=demo.api.resource)
        demo.token_claims = session.get_access_token_claims(demo.api.resource)
    except LogtoError as exc:  # AccessTokenError: not granted, no refresh token, provider refused
        demo.token_error = str(exc)
        return
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    injected: httpx.Client | None = current_app.config["EXAMPLE_API_CLIENT"]
    try:
        if injected is not None:
            answer = injected.get(demo.api.items_url, headers=headers)
        else:
            with httpx.Client(timeout=10.0) as client:
                answer = client.get(demo.api.items_url, headers=headers)
    except httpx.HTTPError as exc:
        demo.call_error = f"{type(exc).__name__}: {exc}"
        return
    demo.record_answer(answer.status_code, answer.text)


def switch_organization(session: SyncSession, demo: common.ApiDemo, selected: str | None) -> None:
    try:
        demo.userinfo = session.fetch_user_info()
    except LogtoError as exc:
        demo.userinfo_error = str(exc)
        return
    if not selected:
        return
    demo.selected_organization = selected
    if selected not in demo.organizations:
        demo.organization_error = "you are not a member of that organization"
        return
    try:
        demo.organization_claims = session.get_organization_token_claims(selected)
    except LogtoError as exc:
        demo.organization_error = str(exc)


def items() -> ResponseReturnValue:
    """The example API. `requires_bearer` let the request through, so `g.access_token_user` is the
    caller of a valid access token for this API's resource with the scope read:items."""
    caller = g.access_token_user
    assert isinstance(caller, AccessTokenUser)
    response = jsonify(common.items_payload(caller))
    response.headers.update(common.NO_STORE)
    return response


def create_app(config: LogtoConfig | None = None, *, api_url: str | None = None,
               http_client: httpx.Client | None = None, api_client: httpx.Client | None = None) -> Flask:
    """The example app with the middleware; `config` defaults to the environment (and .env).

    With an API resource configured it also serves the example API. `api_url` is where
    `/api-demo` reaches it (default: EXAMPLE_API_URL, else this server's HOST and PORT);
    `http_client` talks to Logto, `api_client` to the example API (both for tests).
    """
    if config is None:
        config = common.load_config()
    api = common.example_api(config, base_url=api_url)
    app = Flask(__name__, root_path=str(Path(__file__).resolve().parent))
    app.config.update(EXAMPLE_API=api, EXAMPLE_API_CLIENT=api_client)
    app.add_url_rule("/", view_func=home)
    app.add_url_rule("/profile", view_func=profile)
    app.add_url_rule("/devices", view_func=devices)
    app.add_url_rule("/api/me", view_func=me)
    app.add_url_rule("/api-demo", view_func=api_demo)
    if api is not None:
        # 401 without a valid token for the API's resource, 403 without read:items (RFC 6750).
        validator = BearerValidator(config.issuer, audience=api.resource, leeway=api.leeway, http_client=http_client)
        app.add_url_rule(common.API_PATH, view_func=requires_bearer(validator, common.API_SCOPE)(items))
    LogtoFlask(app, config, http_client=http_client)
    return app


def __getattr__(name: str) -> Flask:
    # `app` for `waitress-serve app:app` or `flask --app app run`, built on first use: importing
    # this module (for `create_app`) needs no configuration.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    try:
        host, port = common.listen_address()
        config = common.load_config()
        application = create_app(config)
    except (LogtoConfigError, ValueError) as exc:
        sys.exit(f"{exc}\n{common.SETUP_HINT}")
    url = config.base_url or common.public_url(host, port)
    from waitress import create_server

    common.configure_logging()
    try:
        server = create_server(application, host=host, port=port)
    except OSError as exc:
        sys.exit(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    # waitress stops serving on KeyboardInterrupt (Ctrl-C) and SystemExit (SIGTERM, see `common.serve`).
    try:
        common.serve(server.run, f"Logto + {FRAMEWORK} example (waitress): open {url}")
    finally:
        server.close()


if __name__ == "__main__":
    main()
