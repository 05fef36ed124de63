# The two commands a newcomer needs are `make demo` and `make test`; both set up first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help setup system-deps test test-fast lint format demo bench schemas lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: system-deps $(INSTALLED) ## install system services and the Python environment in .venv

system-deps: ## Java, Maven, Prometheus and PostgreSQL from Debian's packages, if missing
	@bash deploy/scripts/install-system-deps.sh

$(INSTALLED): pyproject.toml constraints.txt
	@echo "creating $(VENV) (pinned by constraints.txt)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q "uv==$(UV_VERSION)"
	@$(BIN)/uv pip install --python $(BIN)/python -c constraints.txt -e '.[all,dev]'
	@touch $@

test: setup ## run every test (unit, integration against real Kafka/Prometheus/PostgreSQL, slow)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup ## unit tests only
	$(BIN)/python -m pytest -m "not integration and not slow" $(PYTEST_ARGS)

lint: setup ## ruff, formatting and mypy strict; changes nothing
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: setup ## a simulated fleet with injected changes through the whole pipeline, scored (ARGS=--keep-running)
	$(BIN)/postmarket demo $(ARGS)

bench: setup ## every benchmark (ratios to a peer measured in the same run), then bench/RESULTS.md
	$(BIN)/python bench/run.py

schemas: setup ## regenerate the committed JSON Schemas
	$(BIN)/postmarket schemas export schemas

lock: setup ## re-resolve constraints.txt from pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --all-extras --python-version 3.11 -q --no-header -o constraints.txt

clean: ## stop the local stack and remove the environment and state
	-$(BIN)/postmarket stack down
	rm -rf $(VENV) .postmarket .mypy_cache .ruff_cache .pytest_cache
