#!/usr/bin/env bash
# `make dist`: build the sdist and, from it, the wheel (python -m build does both, in that order)
# with no warning; twine check --strict; install the wheel in clean virtualenvs and sign in
# against FakeLogto (scripts/dist_smoke.py): WSGI with only the base dependencies (no Starlette),
# then ASGI with the `starlette` extra. Usage: scripts/check-dist.sh PYTHON (one with build and twine).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${1:-python3}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# PYTHONPATH would put this checkout before the installed wheel; PYTHONDONTWRITEBYTECODE makes
# setuptools warn that it skips byte-compiling (a warning about this shell, not the package).
unset PYTHONPATH PYTHONDONTWRITEBYTECODE

echo "dist: python -m build (the sdist, then the wheel built from the sdist)"
if ! "$PY" -m build --outdir "$OUT/dist" . >"$OUT/build.log" 2>&1; then
    cat "$OUT/build.log"; exit 1
fi
if grep -inE "warn|deprecat" "$OUT/build.log"; then
    echo "dist: the build printed warnings (above)"; exit 1
fi
SDIST=$(ls "$OUT"/dist/*.tar.gz)
WHEEL=$(ls "$OUT"/dist/*.whl)

echo "dist: twine check --strict"
"$PY" -m twine check --strict "$OUT"/dist/*

echo "dist: contents"
"$PY" - "$SDIST" "$WHEEL" <<'EOF'
import re, sys, tarfile, zipfile
sdist, wheel = sys.argv[1:]
names = tarfile.open(sdist).getnames()
root = names[0].split("/")[0]
files = {n.removeprefix(root + "/") for n in names}
for needed in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "logto_middleware/py.typed"):
    assert needed in files, f"the sdist lacks {needed}"
# The test suite needs the repository (npm provider, Redis, browsers): shipped whole or not at all.
assert not any(n.startswith(("tests/", "examples/", "benchmarks/")) for n in files), "the sdist ships tests"
whl = zipfile.ZipFile(wheel)
meta = whl.read(next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))).decode()
init = whl.read("logto_middleware/__init__.py").decode()
version = re.search(r'^__version__ = "([^"]+)"', init, re.M).group(1)
assert f"\nVersion: {version}\n" in meta, "the wheel's version is not logto_middleware.__version__"
assert "License-Expression: MIT" in meta and any(n.endswith("licenses/LICENSE") for n in whl.namelist())
assert "logto_middleware/py.typed" in whl.namelist()
assert not any(n.startswith("tests/") for n in whl.namelist())
print(f"  {len(files)} files in the sdist, {len(whl.namelist())} in the wheel, version {version}")
EOF

pip_install() {  # quiet unless it fails (pip's notes about this machine's package sources are noise)
    if ! "$OUT/venv/bin/python" -m pip install --quiet "$@" >"$OUT/pip.log" 2>&1; then
        cat "$OUT/pip.log"; exit 1
    fi
}

echo "dist: a clean virtualenv (python -m venv) with the wheel and its base dependencies"
python3 -m venv "$OUT/venv"
pip_install "$WHEEL"
"$OUT/venv/bin/python" -m pip check
(cd "$OUT" && "$OUT/venv/bin/python" "$REPO/scripts/dist_smoke.py" wsgi)

echo "dist: the same virtualenv with the starlette extra"
pip_install "$WHEEL[starlette]"
(cd "$OUT" && "$OUT/venv/bin/python" "$REPO/scripts/dist_smoke.py" asgi)
echo "dist: ok"
