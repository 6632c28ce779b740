"""The example apps for multi-process servers, configured from the environment as a user would.

    uvicorn --factory worker_apps:starlette_app --app-dir tests/e2e --workers 4
    gunicorn -w 4 --pythonpath tests/e2e 'worker_apps:flask_app()'
    gunicorn -w 4 -k uvicorn.workers.UvicornWorker --pythonpath tests/e2e 'worker_apps:starlette_app()'
    hypercorn -w 4 'worker_apps:starlette_app()'       (with tests/e2e on PYTHONPATH)

Each app is `create_app()` of examples/<kind>/app.py, unchanged, wrapped (outermost, so the
middleware's own answers carry it too) to add one response header, `X-Worker-Pid`: the process
that served the request, so a test can see its requests spread over the workers.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

WORKER_HEADER = "X-Worker-Pid"


def load_example(kind: str) -> ModuleType:
    """examples/<kind>/app.py as a module (both are called app.py: each gets a name of its own)."""
    name = f"logto_example_{kind}_app"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / kind / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def starlette_app() -> Any:
    """The Starlette example (ASGI), for uvicorn's factory mode."""
    app = load_example("starlette").create_app()

    async def with_pid(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_with_pid(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                worker = (WORKER_HEADER.lower().encode(), str(os.getpid()).encode())
                message = {**message, "headers": [*message.get("headers", []), worker]}
            await send(message)

        await app(scope, receive, send_with_pid)

    return with_pid


def flask_app() -> Callable[..., Iterable[bytes]]:
    """The Flask example (WSGI), for gunicorn's `module:factory()`."""
    app = load_example("flask").create_app()

    def with_pid(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start_with_pid(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, (WORKER_HEADER, str(os.getpid()))], exc_info)

        result: Iterable[bytes] = app(environ, start_with_pid)
        return result

    return with_pid

