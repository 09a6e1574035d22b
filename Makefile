# Everything runs from .venv, which this Makefile creates and keeps in step with
# pyproject.toml and constraints.txt (the pinned versions the tests passed with).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench migrate check-migrations clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/llmtune-receiver serve --init-env

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check-migrations: $(STAMP)
	bash .ci/check-migrations

bench: $(STAMP)
	$(BIN)/python -m tests.perf.bench_ingest

migrate: $(STAMP)
	$(BIN)/llmtune-receiver migrate

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
