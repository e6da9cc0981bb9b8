# One command each: `make run` (the main job on the real data) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
MLFLOW_SERVER := $(VENV)/mlflow-server
# Keep Prefect's database and settings inside the checkout unless the user chose a place.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export TF_CPP_MIN_LOG_LEVEL ?= 2

PREFECT_PORT ?= 4200
POOL := imdb-process

.PHONY: install install-gpu run prepare resume test test-fast lint bench server worker deploy clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# The MLflow tracking server the tests start is a service apart, in its own environment
	@# (the full `mlflow` package; the pipeline itself needs only the mlflow-skinny client).
	$(PYTHON) -m venv $(MLFLOW_SERVER)
	$(MLFLOW_SERVER)/bin/python -m pip install --quiet \
	  "mlflow==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("mlflow-skinny"))')"
	touch $(STAMP)

install: $(STAMP)

## GPU: swap the CPU wheel for tensorflow[and-cuda] (both provide the `tensorflow` module).
install-gpu: install
	$(BIN)/python -m pip uninstall --quiet --yes tensorflow-cpu
	$(BIN)/python -m pip install --quiet -e '.[gpu]'

## The main job (source: IMDB_SOURCE / IMDB_SHA256, default the official archive URL).
run: install
	$(BIN)/imdb-pipeline train

## Continue the newest unfinished run from its newest valid checkpoint.
resume: install
	$(BIN)/imdb-pipeline resume

prepare: install
	$(BIN)/imdb-pipeline prepare

## Whole suite, real-data tests included when ../shared/imdb/aclImdb_v1.tar.gz exists.
## Under CI (CI=true) or with IMDB_TEST_POSTGRES=1, the deployment test runs again on PostgreSQL.
test: install
	$(BIN)/ruff check flows tasks tests benchmarks
	$(BIN)/python -m pytest
	@if [ "$${CI:-}" = "true" ] || [ -n "$${IMDB_TEST_POSTGRES:-}" ]; then bash scripts/test-postgres.sh; fi

## Skip the slow real-data tests.
test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check flows tasks tests benchmarks
	$(BIN)/ruff format --check flows tasks tests benchmarks

bench: install
	$(BIN)/python benchmarks/bench_prepare.py

## Local Prefect server on its embedded SQLite in $(PREFECT_HOME) (PostgreSQL: see README).
server: install
	$(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

## A process worker for the deployments (creates the work pool if needed).
worker: install
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api $(BIN)/prefect work-pool inspect $(POOL) >/dev/null 2>&1 \
	  || PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api $(BIN)/prefect work-pool create $(POOL) --type process
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30 \
	  $(BIN)/prefect worker start --pool $(POOL)

## Deployments from prefect.yaml (pipeline, nightly, resume + triggers) and the heartbeat automation.
deploy: install
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api $(BIN)/prefect --no-prompt deploy --all
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api \
	  $(BIN)/prefect --no-prompt automation delete imdb-mark-silent-runs-crashed >/dev/null 2>&1 || true
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api \
	  $(BIN)/prefect automation create --from-file automations/crashed-runs.yaml

clean:
	rm -rf $(VENV) .prefect
