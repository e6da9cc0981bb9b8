# One command each: `make run` (the main job on the real data) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Keep Prefect's database and settings inside the checkout unless the user chose a place.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install run prepare test test-fast lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job (source: IMDB_SOURCE / IMDB_SHA256, default the official archive URL).
run: install
	$(BIN)/imdb-pipeline prepare

prepare: install
	$(BIN)/imdb-pipeline prepare

## Whole suite, real-data tests included when ../shared/imdb/aclImdb_v1.tar.gz exists.
test: install
	$(BIN)/ruff check flows tasks tests benchmarks
	$(BIN)/python -m pytest

## Skip the slow real-data tests.
test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check flows tasks tests benchmarks
	$(BIN)/ruff format --check flows tasks tests benchmarks

bench: install
	$(BIN)/python benchmarks/bench_prepare.py

clean:
	rm -rf $(VENV) .prefect
