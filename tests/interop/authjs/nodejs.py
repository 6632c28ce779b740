"""Node.js side of the Auth.js interop tests: the pinned @auth/core (package-lock.json here),
`jwt_tool.mjs` (encode/decode/getToken/... as a JSON-lines process) and `express_app.mjs`."""

from __future__ import annotations

import atexit
import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..provider import ProviderUnavailable, node_executable, stop_process
from ..provider import ensure_node_modules as install

AUTHJS_DIR = Path(__file__).resolve().parent
JWT_TOOL = AUTHJS_DIR / "jwt_tool.mjs"
EXPRESS_APP = AUTHJS_DIR / "express_app.mjs"
NodeUnavailable = ProviderUnavailable  # node, npm or the pinned packages are missing


def ensure_node_modules(timeout: float = 300.0) -> None:
    """`npm ci` (exactly the lockfile) unless the pinned Auth.js packages are installed."""
    install(AUTHJS_DIR, ("@auth/core", "@auth/express"), timeout)


def node_ready() -> str:
    """The node executable, with the pinned packages installed; raises NodeUnavailable."""
    node = node_executable()
    ensure_node_modules()
    return node


class NodeError(AssertionError):
    """An op of jwt_tool.mjs failed where the test expected it to succeed."""


class NodeFailure(RuntimeError):
    """The Node side could not give @auth/core's answer (no answer in time, the tool died, or it
    did not understand the request): an error of the harness, never a verdict. Not an
    `AssertionError`, so an xfail for a known discrepancy (`raises=AssertionError`) does not
    swallow it either."""


class JwtTool:
    """One `node jwt_tool.mjs` process; each call sends one line (an op or a batch of ops) and
    reads the one line that answers it.

    A call that gets no answer within `timeout` leaves the process out of step (its late answer
    would be read as the next call's): the process is stopped, the call raises `NodeFailure`,
    and the next call starts a fresh one."""

    def __init__(self, node: str, timeout: float = 30.0) -> None:
        self._node = node
        self._timeout = timeout
        self._lock = threading.Lock()
        self._start()
        self.versions = self.ok("versions")

    def _start(self) -> None:
        self._stderr: list[str] = []
        self._answers: queue.Queue[str] = queue.Queue()
        self._proc = subprocess.Popen([self._node, str(JWT_TOOL)], cwd=AUTHJS_DIR, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        atexit.register(stop_process, self._proc)
        threading.Thread(target=self._pump, args=(self._proc.stderr, self._stderr.append), daemon=True).start()
        threading.Thread(target=self._pump, args=(self._proc.stdout, self._answers.put), daemon=True).start()

    @staticmethod
    def _pump(stream: IO[str], put: Callable[[str], None]) -> None:
        for line in stream:  # one reader per stream for the life of the process
            put(line)

    def _failure(self, what: str) -> NodeFailure:
        stop_process(self._proc)  # out of step: never read another answer from this process
        return NodeFailure(f"jwt_tool.mjs {what}:\n{''.join(self._stderr)}")

    def _send(self, request: Any) -> Any:
        with self._lock:
            if self._proc.poll() is not None:
                self._start()
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write(json.dumps(request) + "\n")
                self._proc.stdin.flush()
                line = self._answers.get(timeout=self._timeout)
            except queue.Empty:
                raise self._failure(f"did not answer within {self._timeout:g} s: {request!r}") from None
            except OSError as exc:
                raise self._failure(f"could not be sent {request!r} ({exc})") from None
            answer = json.loads(line)
        for result in answer if isinstance(answer, list) else [answer]:
            if result.get("harness"):  # the tool's own failure (bad request line, unknown op)
                raise NodeFailure(f"jwt_tool.mjs refused the request: {result.get('error')}")
        return answer

    def run(self, op: str, **params: Any) -> dict[str, Any]:
        """One op; its result (`ok` false with an `error` when @auth/core threw). Raises
        `NodeFailure` when there is no such result to give."""
        answer: dict[str, Any] = self._send({"op": op, **params})
        return answer

    def batch(self, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Several ops in one round trip; results in order."""
        if not ops:
            return []
        answers: list[dict[str, Any]] = self._send(ops)
        return answers

    def ok(self, op: str, **params: Any) -> dict[str, Any]:
        answer = self.run(op, **params)
        if not answer.get("ok"):
            raise NodeError(f"{op} failed in @auth/core: {answer.get('error')}")
        return answer

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        stop_process(self._proc)


class ExpressApp:
    """`node express_app.mjs`: ExpressAuth with the Logto provider, on 127.0.0.1:<port>."""

    def __init__(self, node: str, port: int, env: dict[str, str], timeout: float = 20.0) -> None:
        self._stderr: list[str] = []
        self.port = port
        self.url = ""
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "NEXTAUTH_"))}
        environ.update(env, PORT=str(port), NODE_ENV="test")
        self._proc = subprocess.Popen([node, str(EXPRESS_APP)], cwd=AUTHJS_DIR, env=environ,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, bufsize=1)
        atexit.register(stop_process, self._proc)
        threading.Thread(target=self._pump_stderr, daemon=True).start()
        ready = threading.Event()

        def pump_stdout() -> None:
            assert self._proc.stdout is not None
            for line in self._proc.stdout:
                if line.startswith("READY ") and not ready.is_set():
                    self.url = line.split(" ", 1)[1].strip()
                    ready.set()

        threading.Thread(target=pump_stdout, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                time.sleep(0.05)
                raise RuntimeError(f"express_app.mjs did not start:\n{self.stderr}")

    def _pump_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def stop(self) -> None:
        stop_process(self._proc)
