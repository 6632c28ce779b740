"""The Django example (`examples/django/app.py`: migrate, then waitress) against the real
oidc-provider: `login_required` sends to sign-in with `next=`, the Django User is linked by sub,
the access token is refreshed when due, and sign-out ends both sessions."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from .harness import EXAMPLES, REFRESH_LEEWAY, ExampleServer, Stack, refresh_stats, timestamp


def uvicorn_server(port: int, origin: str, env: dict[str, str], workdir: Path) -> ExampleServer:
    """The example's ASGI application under uvicorn: Django's async middleware chain."""
    app = str(EXAMPLES / "django" / "app.py")
    subprocess.run([sys.executable, app, "--migrate"], env=env, cwd=workdir, check=True, timeout=60)
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES / "django"), "asgi:application",
               "--host", "127.0.0.1", "--port", str(port)]
    return ExampleServer("django", port, origin, env, workdir, command=command)


@pytest.fixture(scope="module", params=["waitress", "uvicorn"])
def django_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    database = tmp_path_factory.mktemp("django") / "db.sqlite3"
    server = uvicorn_server if request.param == "uvicorn" else None
    running = Stack("django", env={"DJANGO_DATABASE": str(database)}, server=server)
    try:
        yield running
    finally:
        running.stop()


def test_django_example_signs_in_refreshes_and_signs_out(django_stack: Stack) -> None:
    stack, op = django_stack, django_stack.op
    with httpx.Client(timeout=15.0, follow_redirects=False) as browser:
        assert browser.get(stack.url("/api/me")).status_code == 401
        protected = browser.get(stack.url("/profile"))
        assert protected.status_code == 302
        assert protected.headers["location"] == "/api/auth/signin?next=/profile"
        start = browser.get(stack.url(protected.headers["location"]))
        assert start.status_code == 302 and start.headers["location"].startswith(op.authorization_endpoint)
        back = op.login(browser, start.headers["location"], "alice")
        landed = browser.get(back)
        assert landed.status_code == 302, f"{landed.text}\n{stack.server.log}"
        assert landed.headers["location"] == stack.url("/profile")
        page = browser.get(stack.url("/profile"))
        assert page.status_code == 200 and "alice" in page.text.lower()

        first = browser.get(stack.url("/api/me")).json()
        assert first["user"]["id"] == "alice"
        assert first["django_user"]["username"] == "logto-alice"
        # A refresh when the access token is due (its lifetime is REFRESH_LEEWAY + 5 s).
        time.sleep(max(0.0, timestamp(first["access_token_expires"]) - REFRESH_LEEWAY - time.time()) + 0.5)
        second = browser.get(stack.url("/api/me")).json()
        assert timestamp(second["access_token_expires"]) > timestamp(first["access_token_expires"])
        assert second["django_user"] == first["django_user"]
        assert refresh_stats(op)["success"] == 1

        csrf = browser.get(stack.url("/api/auth/csrf")).json()["csrfToken"]
        signout = browser.post(stack.url("/api/auth/signout"), data={"csrfToken": csrf})
        assert signout.status_code == 302, signout.text
        end_session = signout.headers["location"]
        assert end_session.startswith(op.end_session_endpoint + "?")
        assert parse_qs(urlsplit(end_session).query)["post_logout_redirect_uri"] == [stack.url("/")]
        assert browser.get(stack.url("/api/me")).status_code == 401
        assert browser.get(stack.url("/profile")).status_code == 302
