"""The dependencies are what the code imports, and an app pays only for what it uses.

`make dist` (scripts/check-dist.sh) builds the distributions and signs in with the installed wheel
in a clean virtualenv; these tests read the source and import the package in fresh interpreters.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import tomllib

import logto_middleware

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "logto_middleware"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# Modules that speak one framework or feature: their imports are that extra's.
INTEGRATIONS = ("django/", "flask.py", "fastapi.py", "starlette.py", "stores/redis.py", "testing/cli.py")


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


_DISTRIBUTIONS = packages_distributions()  # a scan of every installed distribution: once


def _distributions(module: str) -> set[str]:
    return {_name(d) for d in _DISTRIBUTIONS.get(module, [module])}


def _imports() -> Iterator[tuple[str, str, bool]]:
    """(file, top-level module, imported when the file is) for every non-relative import."""
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        eager: set[int] = set()
        for node in tree.body:  # module level, outside `if TYPE_CHECKING:`
            if isinstance(node, ast.Import | ast.ImportFrom):
                eager.add(id(node))
            elif isinstance(node, ast.Try):
                eager.update(id(n) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "logto_middleware":
                    yield str(path.relative_to(PACKAGE)), top, id(node) in eager


def test_the_base_dependencies_are_what_the_package_imports() -> None:
    base = {_name(r) for r in PYPROJECT["dependencies"]}
    eager = {(file, d) for file, module, is_eager in _imports() if is_eager and not file.startswith(INTEGRATIONS)
             for d in _distributions(module)}
    # Before: starlette (session.py, bearer.py, testing) was needed by every app, cryptography undeclared.
    undeclared = {d for _, d in eager} - base
    assert undeclared == set(), sorted(found for found in eager if found[1] in undeclared)
    # authlib was declared and never imported: every base dependency is imported somewhere (at
    # module level or where it is first needed, as httpx, joserfc and cryptography are).
    used = {d for file, module, _ in _imports() if not file.startswith(INTEGRATIONS) for d in _distributions(module)}
    assert base - used == set()


def test_every_import_is_in_an_extra_and_the_test_extra_has_them_all() -> None:
    extras = {name: {_name(r) for r in reqs} for name, reqs in PYPROJECT["optional-dependencies"].items()}
    base = {_name(r) for r in PYPROJECT["dependencies"]}
    used = {d for _, module, _ in _imports() for d in _distributions(module)}
    features = set().union(*(reqs for name, reqs in extras.items() if name not in ("test", "examples", "bench")))
    assert used - base - features == set()
    # `mypy --strict logto_middleware` with only the test extra sees every module it imports.
    assert used - base - extras["test"] == set()
    assert {"build", "twine"} <= extras["test"]
    assert {"starlette", "uvicorn"} <= extras["dev-provider"]  # logto-dev-provider serves FakeLogto.app


HEAVY = ("starlette", "httpx", "joserfc", "cryptography", "asyncio", "redis", "fastapi", "flask", "django")


def _fresh_import(code: str) -> list[str]:
    """The heavy modules (`HEAVY`) loaded after running `code` in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    return out.stdout.split()


def test_importing_the_package_imports_none_of_its_heavy_dependencies() -> None:
    assert _fresh_import("import logto_middleware") == []


def test_a_wsgi_app_never_imports_starlette() -> None:
    loaded = _fresh_import(
        "from logto_middleware import LogtoWSGIMiddleware, LogtoConfig, BearerValidator, BearerWSGIMiddleware, "
        "requires_bearer, LogtoUser, AnonymousUser, AccessTokenUser, MemoryStore, CookieStore\n"
        "from logto_middleware.testing import FakeLogto, make_session_cookie\n"
        "import logto_middleware.flask")
    assert "starlette" not in loaded and "redis" not in loaded and "fastapi" not in loaded, loaded


_SETTINGS = {"issuer": "https://tenant.logto.app/oidc", "client_id": "id", "client_secret": "app-secret",
             "secret": "s" * 40, "base_url": "http://localhost"}
_CONFIG = f"LogtoConfig(**{_SETTINGS!r})"  # the same configuration, in a probe's source


def test_a_wsgi_app_loads_no_http_client_jose_nor_asyncio_before_it_needs_them() -> None:
    # Before: this import loaded httpx, joserfc, cryptography and asyncio (~130 ms on a laptop);
    # `LogtoASGIMiddleware` is no heavier (asyncio comes with the ASGI server).
    assert _fresh_import("from logto_middleware import LogtoWSGIMiddleware, LogtoASGIMiddleware, LogtoConfig") == []
    # Built, the middleware has derived its keys (cryptography); its HTTP client is made on the
    # first provider call, joserfc loaded with the first token verified.
    built = f"from logto_middleware import LogtoWSGIMiddleware, LogtoConfig\nLogtoWSGIMiddleware(None, {_CONFIG})"
    assert _fresh_import(built) == ["cryptography"]


def test_a_request_served_from_its_session_cookie_loads_neither_httpx_nor_joserfc() -> None:
    from logto_middleware import LogtoConfig
    from logto_middleware.testing import make_session_cookie

    cookie = make_session_cookie(LogtoConfig(**_SETTINGS))
    serve = (f"from logto_middleware import LogtoWSGIMiddleware, LogtoConfig\n"
             f"seen = []\n"
             f"app = LogtoWSGIMiddleware(lambda environ, start: seen.append(environ['logto.user'].claims['sub']) or [],"
             f" {_CONFIG})\n"
             f"app({{'REQUEST_METHOD': 'GET', 'PATH_INFO': '/', 'HTTP_COOKIE': {cookie!r}}}, lambda *args: None)\n"
             f"assert seen == ['test-user'], seen")
    assert _fresh_import(serve) == ["cryptography"]


def test_redis_is_imported_by_the_redis_store_only() -> None:
    assert "redis" in _fresh_import("from logto_middleware import RedisStore")
    assert "redis" not in _fresh_import("from logto_middleware.stores import store_from_setting, MemoryStore")


@pytest.mark.parametrize("name", logto_middleware.__all__)
def test_every_public_name_is_importable_from_the_package(name: str) -> None:
    value = getattr(logto_middleware, name)
    assert name in dir(logto_middleware)
    module = importlib.import_module(value.__module__) if hasattr(value, "__module__") else None
    assert module is None or getattr(module, name, value) is value


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        logto_middleware.no_such_name  # noqa: B018


def test_the_version_is_written_once() -> None:
    assert "version" in PYPROJECT["dynamic"] and "version" not in PYPROJECT
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|[ab]\d+|rc\d+)?", logto_middleware.__version__)
