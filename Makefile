# The two commands of a fresh machine: `make demo` and `make test`.
# Each creates (or updates, when pyproject.toml changed) the virtual environment
# in .venv with recgov and its test tools, then does its job.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=
# The suite runs on this many processes (pytest-xdist), each test file whole on one; 0 runs it in this process.
PYTEST_WORKERS ?= 2

.PHONY: demo test env wheel-smoke lint-imports docs clean-env

demo: $(INSTALLED)
	$(BIN)/recgov demo

test: $(INSTALLED)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

env: $(INSTALLED)

$(INSTALLED): pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: Python 3.11 is needed (python3.11 or python3 on PATH)" >&2; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/python -m pip install --disable-pip-version-check -e ".[dev]"
	touch $(INSTALLED)

docs: $(INSTALLED)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

lint-imports: $(INSTALLED)
	$(BIN)/lint-imports

wheel-smoke:
	bash .ci/wheel-smoke

clean-env:
	rm -rf $(VENV)
