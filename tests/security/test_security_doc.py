"""SECURITY.md maps each threat to the tests that prove its defence: every test it names must
exist where it says, so the map cannot drift from the suite."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# `file.py::test_name`, or `::test_name` for another test of the file named last in the row.
REFERENCE = re.compile(r"`((?:[\w/]+\.py)?)::(\w+)")


def references() -> list[tuple[str, str]]:
    found = []
    for row in (ROOT / "SECURITY.md").read_text().splitlines():
        if not row.startswith("|"):
            continue
        current = ""
        for match in REFERENCE.finditer(row):
            current = match.group(1) or current
            assert current, f"SECURITY.md names ::{match.group(2)} before any file: {row[:80]}"
            found.append((current if current.startswith("tests/") else f"tests/security/{current}", match.group(2)))
    return found


def test_every_test_security_md_names_exists() -> None:
    refs = references()
    assert len(refs) > 100  # the parser still finds the map
    missing = [f"{path}::{name}" for path, name in refs
               if not (ROOT / path).is_file() or not re.search(rf"def {name}\b", (ROOT / path).read_text())]
    assert missing == []
