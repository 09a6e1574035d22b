# Everything runs from .venv, which this Makefile creates and keeps in step with
# pyproject.toml and constraints.txt (the pinned versions the tests passed with). `run`, `demo`
# and `migrate` install the service's own dependencies only (RUN_STAMP); the test, lint and
# bench targets add the dev extra (STAMP, which .ci/run builds first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed
# `make run PORT=8080 HOST=0.0.0.0`: passed to serve as options (PORT and HOST in the
# environment or .env are read by serve itself).
SERVE_ARGS := $(if $(PORT),--port $(PORT)) $(if $(HOST),--host $(HOST))

.PHONY: run demo test test-fast fuzz fault lint format bench bench-dispatch bench-compare bench-cli migrate check-migrations check-wheel check-deploy check-quickstart clean

$(RUN_STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/llmtune-receiver serve --init-env $(SERVE_ARGS)

# A fake LLMTune and the service on this machine: submit a job, watch it reach deployed
# (`make demo PORT=8080` puts the receiver on that port; default: a free one).
demo: $(RUN_STAMP)
	$(BIN)/llmtune-receiver demo $(if $(PORT),--port $(PORT))

# `make test` measures branch coverage of service/, servers started by the e2e tests included
# (see [tool.coverage.run]); extra pytest options go in PYTEST_ARGS (.ci/run adds the floor).
# Two pytest-xdist workers, one per core here (`-n auto` also gives 2 on this machine), each
# with its own databases; then the fault tests alone, one at a time, since they time recoveries
# and cut connections. The second run adds its coverage to the first's and reports (and, with
# --cov-fail-under in PYTEST_ARGS, checks) the sum.
MEASURE := --cov=service --cov-branch
COVERAGE := $(MEASURE) --cov-report=term-missing:skip-covered
PYTEST_ARGS ?=
WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -n $(WORKERS) -m "not fault" $(MEASURE) --cov-report= \
		$(PYTEST_ARGS) --cov-fail-under=0
	$(BIN)/python -m pytest -p no:xdist -m fault --cov-append $(COVERAGE) $(PYTEST_ARGS)

# The quick loop while working: no e2e servers, no fault tests, no coverage.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(WORKERS) -m "not e2e and not fault" $(PYTEST_ARGS)

# The webhook property test (any body, any signature: never a 5xx, never a forged event stored)
# with many more examples than CI runs, on both databases.
FUZZ_EXAMPLES ?= 5000
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/api/test_properties.py

# The fault tests (SIGKILL, SIGTERM and database cuts under load, destinations down, scale-out
# with a worker killed) with FAULT_SCALE times the events of `make test`; each prints one
# summary line (sent, acknowledged, stored, lost, duplicates, recovery).
FAULT_SCALE ?= 10
fault: $(STAMP)
	FAULT_SCALE=$(FAULT_SCALE) $(BIN)/python -m pytest -m fault -s tests/fault

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check-migrations: $(STAMP)
	bash .ci/check-migrations

check-wheel: $(STAMP)
	bash .ci/check-wheel

# deploy/: hadolint, the Compose schema, Kubernetes schemas and cross-checks (no Docker needed).
check-deploy: $(STAMP)
	bash .ci/check-deploy

# The README's quick start, block by block as written, in a fresh clone of what is committed
# (its own `make run` on port 18123, a fake LLMTune on 18124; everything stopped by pid after).
check-quickstart:
	bash .ci/check-quickstart

bench: $(STAMP)
	$(BIN)/python -m tests.perf.bench_ingest

bench-dispatch: $(STAMP)
	$(BIN)/python -m tests.perf.bench_dispatch

# The service against a bare Starlette app, one Markdown table (wrk, installed if missing), and
# each store again with encryption at rest on (pg-enc, sqlite-enc: an on/off table); about 5
# minutes. Options in BENCH_ARGS, e.g. BENCH_ARGS="--duration 3 --concurrency 16" for a smoke
# run, or BENCH_ARGS="--only pg,pg-enc,sqlite,sqlite-enc" for the encryption pairs alone.
BENCH_ARGS ?=
bench-compare: $(STAMP)
	$(BIN)/python -m tests.perf.bench_compare $(BENCH_ARGS)

# The command line's start-up CPU against importing starlette.applications (goal: --help ≤ 3x).
bench-cli: $(STAMP)
	$(BIN)/python -m tests.perf.bench_cli

migrate: $(RUN_STAMP)
	$(BIN)/llmtune-receiver migrate

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache .coverage .coverage.*
