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
	@echo "installing gpuhire and its pinned dependencies into $(VENV) (log: $(VENV)/install.log)"
	@$(BIN)/pip install --upgrade pip >$(VENV)/install.log 2>&1 && \
	  $(BIN)/pip install -e ".[dev,trainer,kraken]" >>$(VENV)/install.log 2>&1 || \
	  { tail -40 $(VENV)/install.log; exit 1; }
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# scripts/test-services writes its exports to a file first: `eval "$$(...)"` would hide its
# failure (eval of nothing succeeds) and the PostgreSQL tests would silently skip.
test: $(STAMP) lint
	@mkdir -p .test-services
	scripts/test-services > .test-services/env.sh || \
	  { echo "make test: scripts/test-services failed (see above)" >&2; exit 1; }
	. ./.test-services/env.sh && $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/bench_ledger.py
	$(BIN)/python bench/bench_cli_start.py

docs: $(STAMP)
	$(BIN)/python -m launcher.docgen > docs/cli.md

clean:
	rm -rf $(VENV) .test-services .pytest_cache .mypy_cache .ruff_cache
