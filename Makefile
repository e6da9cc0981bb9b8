# One command each: `make run` (the main job on the real data) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
MLFLOW_SERVER := $(VENV)/mlflow-server
TF_CLIENT := $(VENV)/tf-client
# Keep Prefect's database and settings inside the checkout unless the user chose a place.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export TF_CPP_MIN_LOG_LEVEL ?= 2

PREFECT_PORT ?= 4200
POOL := imdb-process

.PHONY: install lock install-gpu run prepare resume test test-fast lint docs bench server worker deploy clean

LOCK := requirements/dev.lock

# Exactly the versions (and hashes) of $(LOCK), then this project itself without resolving again.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	@# uv (from PyPI) installs the same packages as pip, several times faster (parallel
	@# downloads, a cache); plain pip where uv cannot be had. Both compile the bytecode at
	@# install (pip by default, uv with --compile-bytecode): where .pyc files are not written
	@# at import (PYTHONDONTWRITEBYTECODE, a read-only venv) every process would otherwise
	@# compile TensorFlow again, 4 s of a one-review `predict`'s 7.5.
	@set -e; uv=$$(command -v uv || true); \
	if [ -z "$$uv" ] && $(BIN)/python -m pip install --quiet uv; then uv=$(BIN)/uv; fi; \
	if [ -n "$$uv" ]; then \
	  echo "installing $(LOCK) with $$uv"; \
	  "$$uv" pip install --quiet --compile-bytecode --python $(BIN)/python --require-hashes -r $(LOCK); \
	  "$$uv" pip install --quiet --python $(BIN)/python --no-deps -e .; \
	else \
	  echo "uv unavailable: installing $(LOCK) with pip"; \
	  $(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK); \
	  $(BIN)/python -m pip install --quiet --no-deps -e .; \
	fi; \
	: "The MLflow tracking server the tests start is a service apart, in its own environment"; \
	: "(the full mlflow package; the pipeline itself needs only the mlflow-skinny client)."; \
	$(PYTHON) -m venv $(MLFLOW_SERVER); \
	mlflow="mlflow==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("mlflow-skinny"))')"; \
	if [ -n "$$uv" ]; then \
	  "$$uv" pip install --quiet --compile-bytecode --python $(MLFLOW_SERVER)/bin/python "$$mlflow"; \
	else \
	  $(MLFLOW_SERVER)/bin/python -m pip install --quiet "$$mlflow"; \
	fi
	touch $(STAMP)

# A client of the exported SavedModel with TensorFlow alone, as a server would have it
# (tests/tasks/serving/test_saved_model_client.py): the locked TensorFlow wheel, nothing else.
$(TF_CLIENT)/.installed-stamp: $(STAMP)
	$(PYTHON) -m venv $(TF_CLIENT)
	@set -e; uv=$$(command -v uv || echo $(BIN)/uv); \
	tf=$$($(BIN)/python -c 'from tasks.core.environment import describe; p = describe()["packages"]; d = "tensorflow-cpu" if "tensorflow-cpu" in p else "tensorflow"; print(f"{d}=={p[d]}")'); \
	echo "installing $$tf alone in $(TF_CLIENT)"; \
	if [ -x "$$uv" ] || command -v "$$uv" >/dev/null; then \
	  "$$uv" pip install --quiet --compile-bytecode --python $(TF_CLIENT)/bin/python "$$tf"; \
	else \
	  $(TF_CLIENT)/bin/python -m pip install --quiet "$$tf"; \
	fi
	touch $@

install: $(STAMP) $(TF_CLIENT)/.installed-stamp

## Resolve pyproject.toml's ranges again into the locks (exact versions and hashes, every
## platform); commit the result. default.lock: the package alone; dev.lock: with [dev].
lock:
	@uv=$$(command -v uv || echo $(BIN)/uv); \
	"$$uv" pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
	  --quiet -o requirements/default.lock && \
	"$$uv" pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
	  --extra dev --quiet -o requirements/dev.lock

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

## Whole suite, real-data tests included when ../shared/imdb/aclImdb_v1.tar.gz exists, in
## parallel (pytest-xdist: PYTEST_WORKERS processes, each taking a whole test file at a time so
## that module fixtures are built once; more workers than cores because the end-to-end tests
## mostly wait on servers and child processes). PYTEST_WORKERS=0 runs it in this process.
## Under CI (CI=true) or with IMDB_TEST_POSTGRES=1 it runs inside scripts/test-postgres.sh,
## which adds the deployment test on PostgreSQL (tests/flows/test_deployments_postgres.py).
## test-fast has no long waits on servers: PYTEST_FAST_WORKERS (3) took 2 min 47-55 s against
## 3 min 6-10 s with 2 on the 2-core Xeon VM, for about 8 % more CPU-seconds (each worker
## imports TensorFlow and starts a Prefect test server; 4 cost about 30 % more than 2).
PYTEST_WORKERS ?= 4
PYTEST_FAST_WORKERS ?= 3
PYTEST := $(BIN)/python -m pytest --dist loadfile --no-loadscope-reorder

test: install
	$(BIN)/ruff check flows tasks tests benchmarks
	bash scripts/ensure-chromium.sh
	@if [ "$${CI:-}" = "true" ] || [ -n "$${IMDB_TEST_POSTGRES:-}" ]; then \
	  bash scripts/test-postgres.sh -- $(PYTEST) -n $(PYTEST_WORKERS); \
	else \
	  $(PYTEST) -n $(PYTEST_WORKERS); \
	fi

## Leaves out the tests marked slow: the real archive, and the end-to-end runs of real
## servers and child processes (deployments, MLflow, kills and resumes, distributed training).
test-fast: install
	bash scripts/ensure-chromium.sh
	$(PYTEST) -n $(PYTEST_FAST_WORKERS) -m "not slow"

lint: install
	$(BIN)/ruff check flows tasks tests benchmarks
	$(BIN)/ruff format --check flows tasks tests benchmarks

## docs/config.md from tasks/config.py (a test checks it is current).
docs: install
	$(BIN)/python -m tasks.config_reference > docs/config.md

bench: install
	$(BIN)/python benchmarks/bench_prepare.py

## Local Prefect server on its embedded SQLite in $(PREFECT_HOME) (PostgreSQL: see docs/operations.md).
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
