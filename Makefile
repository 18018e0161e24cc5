# Plus Ultra: the README's commands. Every target is idempotent; set-up is skipped when nothing changed.
#   make run    set up, build the synthetic database if absent, materialise the whole graph (smoke preset)
#   make test   set up with test extras, run the unit and integration tiers (`make test-fast`: unit only)
#   make ui     open the Dagster UI (webserver + daemon) on the same instance: http://127.0.0.1:3000

SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
CONFIG ?= configs/smoke.yaml
DB ?= data/fixture.db
PORT ?= 3000
# torch: the CPU build that is on local disk here; a GPU user sets e.g.
#   make TORCH_SPEC=torch TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cu126" run
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?=

export PLUS_ULTRA_HOME ?= $(CURDIR)/.plus_ultra
export DAGSTER_HOME ?= $(PLUS_ULTRA_HOME)/dagster
export PLUS_ULTRA_CONFIG ?= $(CONFIG)
export PLUS_ULTRA_DB ?= $(DB)
export DAGSTER_DISABLE_TELEMETRY = 1
export WANDB_MODE ?= offline
export WANDB_SILENT = true
export WANDB_DIR ?= $(PLUS_ULTRA_HOME)

BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
STAMP_TEST := $(VENV)/.installed-test-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup setup-test run test test-fast test-slow ui fixture instance clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(BIN)/pip install --quiet -e .
	rm -f $(VENV)/.installed-run-* && touch $@

$(STAMP_TEST): $(STAMP_RUN)
	$(BIN)/pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-test-* && touch $@

setup: $(STAMP_RUN)
setup-test: $(STAMP_TEST)

instance:
	@mkdir -p "$(DAGSTER_HOME)" && cp dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"

$(DB): | $(STAMP_RUN)
	$(BIN)/plus-ultra fixture $(DB) --config $(CONFIG)

fixture: $(STAMP_RUN) $(DB)

run: setup instance fixture
	$(BIN)/python -m plus_ultra_assets.run
	@$(BIN)/plus-ultra outputs

test: setup-test
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-fast: setup-test
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-slow: setup-test
	$(BIN)/python -m pytest -q -m "slow" $(PYTEST_ARGS)

ui: setup instance fixture
	$(BIN)/dagster dev -h 127.0.0.1 -p $(PORT) -w workspace.yaml

clean:
	rm -rf $(PLUS_ULTRA_HOME)
