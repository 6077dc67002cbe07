# Tongdao: the two commands a newcomer runs are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_DIR ?= data
PYTHON ?= python3
# make test: xdist workers (the host-wide tests share one of them; see tests/conftest.py).
TEST_WORKERS ?= 2
# make run: where the server listens and keeps its data, from the environment (or make's
# command line, e.g. `make run TONGDAO_PORT=9000`); the same variables tongdao server reads.
TONGDAO_HOST ?= 127.0.0.1
TONGDAO_PORT ?= 8080
TONGDAO_DATA_DIR ?= $(DATA_DIR)

.PHONY: help install system-packages venv run test check lint typecheck unit bench demo clean

help:
	@echo "make run    install what is missing, migrate, serve http://$(TONGDAO_HOST):$(TONGDAO_PORT) (SQLite)"
	@echo "make test   install what is missing and run the whole suite (root for namespaces)"
	@echo "make check  ruff, mypy strict, migrations check (part of make test)"
	@echo "make bench  benchmarks, JSON results under bench/results/"
	@echo "make demo   two PoPs, a link, two companies and their HQs in namespaces (root)"

install: system-packages venv

system-packages:
	@bash scripts/install-system.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: install
	$(VENV)/bin/tongdao server --data-dir $(TONGDAO_DATA_DIR) --host $(TONGDAO_HOST) --port $(TONGDAO_PORT)

check: install
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m tongdao.store.check

test: install check
	TONGDAO_TEST_REQUIRE_ALL=1 $(VENV)/bin/pytest -p no:cacheprovider -n $(TEST_WORKERS) $(PYTEST_ARGS)

unit: venv
	$(VENV)/bin/pytest -p no:cacheprovider -m "not postgres and not browser and not root" $(PYTEST_ARGS)

bench: install
	$(VENV)/bin/python -m bench $(BENCH_ARGS)

demo: install
	$(VENV)/bin/python -m tongdao.demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache bench/results
