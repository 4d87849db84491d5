# streamer — developer and CI entry points. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-streamer

.PHONY: help setup install test test-deploy test-unit test-integration test-faults lint format typecheck docs dev-up dev-down dev-status demo bench train clean lint-deploy

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml setup.py streamer/codec/_native.c streamer/features/_fold.c streamer/model/_treeshap.c
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,dev,serve,parquet]"
	@touch $(STAMP)

install: $(STAMP) ## create .venv with streamer and its test/dev tools

setup: ## what tests and demo need: system packages, .venv with all extras, Kafka jars, helm, actionlint
	@VENV=$(VENV) .ci/setup.sh

# pytest-xdist spreads a run across the cores: each worker has its own Kafka and Redis, and
# the tests of the schema registry and of MLflow run on one worker each, which starts that
# server only (tests/conftest.py). TEST_WORKERS=0 runs everything in one process. Three
# workers on two cores: the integration tests spend much of their time waiting (for a
# broker, a restart, an outage's fixed length), so a third keeps the cores busier.
TEST_WORKERS ?= 3
XDIST = -n $(TEST_WORKERS) --dist loadgroup

# Every check runs even when another fails (one CI run shows every failure); the target
# fails if any did. Lint and the docs build run beside the tests (whose first minute waits
# for servers to start) and print their output when the tests are done.
test: setup ## everything CI runs: set-up, lint, docs, unit tests, deploy checks, integration and fault tests
	@failed=; out=$$(mktemp -d); \
	for check in lint docs; do \
	  ( $(MAKE) --no-print-directory $$check > $$out/$$check 2>&1; echo $$? > $$out/$$check.rc ) & \
	done; \
	$(PY) -m pytest $(XDIST) --durations=20 tests/unit tests/deploy tests/integration || failed="$$failed tests"; \
	wait; \
	for check in lint docs; do \
	  cat $$out/$$check; [ "$$(cat $$out/$$check.rc)" = 0 ] || failed="$$failed $$check"; \
	done; \
	rm -rf $$out; \
	if [ -n "$$failed" ]; then echo "make test: failed:$$failed" >&2; exit 1; fi

test-deploy: setup ## offline checks of the chart, compose file, dashboard, alerts, Dockerfile, workflow
	$(PY) -m pytest tests/deploy

test-unit: $(STAMP) ## unit tests only (no servers)
	$(PY) -m pytest tests/unit

test-integration: $(STAMP) ## integration tests only (real Kafka and Redis), fault scenarios included
	$(PY) -m pytest $(XDIST) tests/integration

test-faults: $(STAMP) ## fault scenarios: kill -9, instances joining and dying, broker restart, wrong SASL password
	$(PY) -m pytest $(XDIST) tests/integration -m faults

mutation: $(STAMP) ## mutation score of the pure core, per module (tests/mutation/modules.toml; slow: not in `make test`)
	$(PY) tests/mutation/run.py $(ARGS)

lint: $(STAMP) ## ruff and strict mypy
	$(VENV)/bin/ruff check streamer tests bench models
	$(VENV)/bin/ruff format --check streamer tests bench models
	$(VENV)/bin/mypy

format: $(STAMP) ## apply ruff's formatting and fixes
	$(VENV)/bin/ruff format streamer tests bench models
	$(VENV)/bin/ruff check --fix streamer tests bench models

typecheck: $(STAMP)
	$(VENV)/bin/mypy

docs: $(STAMP) ## build the documentation site (mkdocs, strict: broken links and missing pages fail) into build/site
	@$(VENV)/bin/python -c 'import material' 2>/dev/null || $(PY) -m pip install -q -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

dev-up: ## start Kafka, Redis, a schema registry and MLflow; `source .dev/env` (ARGS=--no-mlflow …)
	@SETUP_SKIP_GO_TOOLS=1 VENV=$(VENV) .ci/setup.sh
	$(PY) -m streamer.dev.devstack up $(ARGS)

dev-down: ## stop the local stack started by dev-up
	$(PY) -m streamer.dev.devstack down

dev-status: ## is the local stack running? (python -m streamer.dev.devstack status exits 1 when not)
	@$(PY) -m streamer.dev.devstack status || true

demo: ## the main job: local stack, features, synthetic events, live scoring, summary
	@SETUP_SKIP_GO_TOOLS=1 VENV=$(VENV) .ci/setup.sh
	@$(PY) -m streamer.dev.demo

bench: $(STAMP) ## streamer vs raw passthrough vs naive per-event scorer, then start-up, on the local stack
	$(PY) bench/pipeline.py
	$(PY) bench/startup.py --imports

train: $(STAMP) ## retrain the model in models/ (needs the train extra)
	$(PY) -m pip install -q -e ".[train]"
	$(PY) models/train.py --out models

clean: ## remove caches and build output
	rm -rf build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis

lint-deploy: setup ## offline checks: chart, k8s/CRD schemas, compose, dashboard, Dockerfile, workflow
	VENV=$(VENV) .ci/lint-deploy.sh
