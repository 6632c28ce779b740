"""Every code sample of the documentation site, and of the README (its front page), runs.

The fenced `python`, `sh` and `bash` blocks of `docs/**/*.md` and `README.md` (the page
`../README.md` here) are extracted and executed: the
Python blocks of one page in order, in one namespace (a page reads top to bottom), in a process
of their own per page; each shell block in bash with `set -euo pipefail`. The environment holds
the four `AUTH_*` variables, pointing at the fake Logto's defaults, so `LogtoConfig.from_env()`
works in a sample.

A block that cannot run (it installs packages, starts a server, calls a real tenant) is marked
with `<!-- not-run: the reason -->` on the line before it, and `NOT_RUN` below counts them so that
they cannot grow silently. `<!-- docs-test: django-settings -->` before a block says it is a
Django settings module: the runner configures Django with it and imports what it names.

    python tests/test_docs.py docs/quickstart.md     # one page's Python samples, as the test does
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# The blocks marked not-run, by page. A new fragment is added here on purpose, with its page.
NOT_RUN = {
    "quickstart.md": 2,  # pip install; the doctor against a real tenant
    "deployment.md": 1,  # servers that run until stopped
    "development.md": 1,  # make demo / make test: installs packages, starts servers
    "testing.md": 1,  # the development provider, a server
    "../README.md": 2,  # make demo / make test; pip install
}
RUN = {"python", "sh", "bash"}
SHOWN = {"text", "toml", "ini", "html", "jinja", "js", "ts", "json"}  # never executed: not code to run
FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
MARK = re.compile(r"<!-- (?:not-run: (?P<reason>[^>]*\S)|docs-test: (?P<directive>[\w-]+)) -->\s*\Z")
ENV = {
    "AUTH_LOGTO_ISSUER": "http://127.0.0.1:3001/oidc",  # FakeLogto's default issuer: never contacted
    "AUTH_LOGTO_ID": "fake-client",
    "AUTH_LOGTO_SECRET": "fake-secret",
    "AUTH_SECRET": "docs-samples-secret-of-at-least-32-characters",
    "NO_MKDOCS_2_WARNING": "1",
}


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the block's first line of code, in the page
    lang: str
    body: str
    not_run: str | None
    directive: str | None


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip()
        last_line = before.rsplit("\n", 1)[-1]
        mark = MARK.search(last_line)
        found.append(Block(
            page=Path(os.path.relpath(path, DOCS)).as_posix(), line=text.count("\n", 0, match.start("body")) + 1,
            lang=match.group("lang"), body=match.group("body"),
            not_run=mark.group("reason") if mark else None, directive=mark.group("directive") if mark else None))
    return found


def pages() -> list[Path]:
    return [*sorted(p for p in DOCS.rglob("*.md") if "_gen" not in p.parts), ROOT / "README.md"]


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_")}
    env.update(ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _configure_django(namespace: dict[str, object]) -> None:
    import django
    from django.conf import settings
    from django.utils.module_loading import import_string

    values = {name: value for name, value in namespace.items() if name.isupper()}
    values.setdefault("DATABASES", {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})
    values.setdefault("SECRET_KEY", "docs-samples")
    settings.configure(**values)
    django.setup()  # imports every installed app
    for dotted in [*values.get("MIDDLEWARE", []), *values.get("AUTHENTICATION_BACKENDS", [])]:
        import_string(dotted)


def run_page(page: str) -> int:
    """Run one page's Python samples in order; print where one fails."""
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in blocks(DOCS / page):
        if block.lang != "python" or block.not_run:
            continue
        # Padded so that a traceback's line numbers are the page's own.
        code = compile("\n" * (block.line - 1) + block.body, f"docs/{page}", "exec")
        try:
            exec(code, namespace)  # the documentation's own samples
            if block.directive == "django-settings":
                _configure_django(namespace)
        except BaseException:
            print(f"docs/{page}:{block.line}: this sample fails", file=sys.stderr)
            traceback.print_exc()
            return 1
    return 0


# -- the tests ---------------------------------------------------------------------------------------

ALL = [block for path in pages() for block in blocks(path)]
PYTHON_PAGES = sorted({b.page for b in ALL if b.lang == "python" and not b.not_run})
SHELL = [b for b in ALL if b.lang in ("sh", "bash") and not b.not_run]


def test_every_fence_is_labelled_and_every_fragment_counted() -> None:
    assert ALL, "no code block found under docs/"
    unknown = [f"{b.page}:{b.line} ```{b.lang}" for b in ALL if b.lang not in RUN | SHOWN]
    assert not unknown, f"label these blocks with a language (python, sh run; {sorted(SHOWN)} are shown only)"
    misplaced = [f"{b.page}:{b.line}" for b in ALL if b.not_run and b.lang not in RUN]
    assert not misplaced, "a not-run marker only makes sense before a python or shell block"
    counted: dict[str, int] = {}
    for block in ALL:
        if block.not_run:
            counted[block.page] = counted.get(block.page, 0) + 1
    assert counted == NOT_RUN, "the samples that do not run changed: update NOT_RUN on purpose, or make them run"


def _run_page_in_process(page: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, __file__, page], cwd=cwd, env=_environment(),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def page_runs(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    # The pages run side by side, a process each (most of a page's time is importing frameworks),
    # only those whose test was selected.
    wanted = [item.callspec.params["page"] for item in request.session.items
              if getattr(item, "originalname", "") == "test_python_samples_run"]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {page: pool.submit(_run_page_in_process, page, tmp_path_factory.mktemp("page"))
                   for page in wanted}
        return {page: future.result() for page, future in futures.items()}


@pytest.mark.parametrize("page", PYTHON_PAGES)
def test_python_samples_run(page: str, page_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    done = page_runs[page]
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.mark.parametrize("block", SHELL, ids=[f"{b.page}:{b.line}" for b in SHELL])
def test_shell_samples_run(block: Block, tmp_path: Path) -> None:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.body], cwd=tmp_path, env=_environment(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"docs/{block.page}:{block.line}\n{done.stdout}\n{done.stderr}"


if __name__ == "__main__":
    for name, value in ENV.items():
        os.environ.setdefault(name, value)
    sys.exit(run_page(sys.argv[1]))
