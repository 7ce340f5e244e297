# The two commands of the README: `make demo` (the main job) and `make test` (the suite).
# Both set up everything on a fresh Debian machine: a virtual environment with the pinned
# dependencies, and (for tests) PostgreSQL, OpenSSH and Chromium through scripts/test-services.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench docs clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,trainer]"
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: $(STAMP) lint
	eval "$$(scripts/test-services)" && $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/bench_ledger.py
	$(BIN)/python bench/bench_cli_start.py

docs: $(STAMP)
	$(BIN)/python -m launcher.docgen > docs/cli.md

clean:
	rm -rf $(VENV) .test-services .pytest_cache .mypy_cache .ruff_cache
