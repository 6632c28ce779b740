# `make demo` signs you in for real on a local development provider; `make test` runs everything.
# Both install what they need on first use. `make docs` builds the documentation site into site/.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo demo-flask demo-django demo-fastapi test lint typecheck dist docs unit system-deps bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test,redis,examples,bench,django,drf,docs]'
	touch $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

demo: $(STAMP)
	$(PY) examples/demo.py starlette

demo-flask: $(STAMP)
	$(PY) examples/demo.py flask

demo-django: $(STAMP)
	$(PY) examples/demo.py django

demo-fastapi: $(STAMP)
	$(PY) examples/demo.py fastapi

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict logto_middleware
	MYPYPATH=examples $(VENV)/bin/mypy --strict examples/common.py examples/demo.py examples/starlette/app.py
	MYPYPATH=examples $(VENV)/bin/mypy --strict examples/flask/app.py
	MYPYPATH=examples:examples/django $(VENV)/bin/mypy --strict --no-namespace-packages examples/django/*.py
	MYPYPATH=examples $(VENV)/bin/mypy --strict examples/fastapi/app.py

# The distributions: built (the wheel from the sdist) without warnings, twine-checked, and the
# wheel installed in a clean virtualenv where a sign-in against FakeLogto must work.
dist: $(STAMP)
	bash scripts/check-dist.sh $(PY)

# Strict: a broken link, a missing page or an undocumented LogtoConfig field fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

test: $(STAMP) system-deps lint typecheck dist docs
	$(VENV)/bin/pytest

bench: $(STAMP) system-deps
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) site tests/interop/provider/node_modules tests/artifacts .pytest_cache .mypy_cache .ruff_cache build logto_middleware.egg-info
