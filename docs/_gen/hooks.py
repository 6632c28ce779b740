"""MkDocs hooks: the pages whose content comes from the code or from files kept elsewhere.

A page asks for generated content with a marker, `<!-- gen:NAME -->`, alone on a line. An unknown
marker, or a generator whose page lost its marker, fails the build: nothing is dropped silently.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the package as checked out, not an installed copy
sys.path.insert(0, str(Path(__file__).resolve().parent))

import config_reference  # noqa: E402 - beside this file

PLOT = ROOT / "benchmarks" / "results" / "latest.png"
PLOT_URI = "assets/benchmarks.png"
RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
MARKER = re.compile(r"^<!-- gen:([a-z-]+) -->$", re.MULTILINE)


def _config() -> str:
    try:
        return config_reference.render()
    except config_reference.DocumentationError as exc:
        raise PluginError(str(exc)) from None


def _security() -> str:
    # SECURITY.md is the one source; on the site its links into the repository become plain paths.
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    text = re.sub(r"^# .*\n", "", text, count=1)  # the page has its own title
    return re.sub(r"\[([^\]]+)\]\((?!https?://|#)[^)]+\)", r"\1", text)


def _benchmarks() -> str:
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "benchmarks" / "report.py")
    if spec is None or spec.loader is None:
        raise PluginError("cannot load benchmarks/report.py")
    report = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = report  # its dataclasses look their module up there
    spec.loader.exec_module(report)
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    targets = report.targets(results)
    passed = sum(t.ok for t in targets)
    lines = [f"From the run of {results['finished']}: **{passed} of {len(targets)} targets pass.**", "",
             "```text", *report.header(results), "```", "",
             "| § | target | measured | limit | result |", "|---|---|---|---|---|"]
    lines += [f"| {t.section} | {t.name} | {t.measured} | {t.limit} | {t.verdict} |" for t in targets]
    lines += ["", "All the figures of that run:", "", "```text", *report.figures_table(results), "```", ""]
    return "\n".join(lines)


GENERATORS = {"config-reference": _config, "security": _security, "benchmarks": _benchmarks}
_seen: set[str] = set()


def on_pre_build(config: Any) -> None:
    _seen.clear()


def on_files(files: Files, config: Any) -> Files:
    # The plot stays where `make bench` writes it; the site serves it from there.
    files.append(File.generated(config, PLOT_URI, abs_src_path=str(PLOT)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise PluginError(f"{page.file.src_uri}: unknown marker gen:{name}")
        _seen.add(name)
        return GENERATORS[name]()

    return MARKER.sub(fill, markdown)


def on_post_build(config: Any) -> None:
    missing = set(GENERATORS) - _seen
    if missing:
        raise PluginError(f"no page carries the marker(s) {', '.join(sorted('gen:' + m for m in missing))}")
