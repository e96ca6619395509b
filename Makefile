# Terrapod developer commands. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.DEFAULT_GOAL := help
.PHONY: help install serve test lint bench

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## Create .venv and install Terrapod with its test tools

serve: $(STAMP) ## Start Terrapod with the embedded defaults (SQLite, files in ./data, HTTPS on :8443)
	$(VENV)/bin/terrapod serve --dev-tls

# Two pytest workers (pytest-xdist), one test file per worker at a time: the suite waits on
# servers, terraform and databases much of the time, so two workers keep both cores busy.
# `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 2

test: $(STAMP) ## Run the whole test suite (needs PostgreSQL on 127.0.0.1:5432)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP) ## ruff, mypy and import-linter
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src/terrapod
	$(VENV)/bin/lint-imports

bench: $(STAMP) ## Run the API latency benchmark against an embedded server
	$(PY) benchmarks/api_latency.py
