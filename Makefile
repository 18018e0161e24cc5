# Plus Ultra: the README's commands. Every target is idempotent; set-up is skipped when nothing changed.
#   make run    set up, build the synthetic database if absent, materialise the whole graph (smoke preset)
#   make test   set up with test extras, run the unit and integration tiers (`make test-fast`: unit only)
#   make ui     open the Dagster UI (webserver + daemon) on the same instance: http://127.0.0.1:3000
#   make lock   refresh requirements.lock after a change to pyproject.toml (keeps every pin it can)
#   make lock-upgrade   re-resolve requirements.lock to the newest versions pyproject.toml allows
#
# Every install goes through requirements.lock (pip constraints, -c): one set of versions for make,
# CI and both Docker images. `make LOCK= setup` installs without it (newest within pyproject's ranges).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
CONFIG ?= configs/smoke.yaml
DB ?= data/fixture.db
PORT ?= 3000
# torch: the CPU build that is on local disk here; a GPU user sets e.g.
#   make TORCH_PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cu126" run
# (the lock pins torch==2.13.0 with no build label, so the CPU and the CUDA builds of 2.13.0 both match it)
TORCH_SPEC ?= torch
TORCH_PIP_ARGS ?=
LOCK ?= requirements.lock
PIP_TOOLS ?= pip-tools==7.7.0
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
CONSTRAIN := $(if $(LOCK),-c $(LOCK))
# tests/test_lock.py checks the environment against the lock unless it was installed without one
export PLUS_ULTRA_UNLOCKED := $(if $(LOCK),0,1)
# set-up reruns only when pyproject.toml or the lock changed (the stamp's name is their checksum)
INPUTS := $(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
STAMP_RUN := $(VENV)/.installed-run-$(INPUTS)
STAMP_TEST := $(VENV)/.installed-test-$(INPUTS)

.PHONY: setup setup-test run test test-fast test-slow ui fixture instance clean lock lock-upgrade

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# The build backend comes from the lock too (--no-build-isolation: nothing is fetched at build time).
$(STAMP_RUN): $(BIN)/python pyproject.toml $(LOCK)
	$(BIN)/pip install --quiet $(CONSTRAIN) setuptools wheel
	$(BIN)/pip install --quiet $(CONSTRAIN) "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(BIN)/pip install --quiet $(CONSTRAIN) --no-build-isolation -e .
	rm -f $(VENV)/.installed-run-* && touch $@

# tests also get the images' deployment extras, so the suite runs in what the images ship
$(STAMP_TEST): $(STAMP_RUN)
	$(BIN)/pip install --quiet $(CONSTRAIN) --no-build-isolation -e ".[test,deploy]"
	$(BIN)/pip install --quiet $(CONSTRAIN) --no-deps $(DATA_SAMPLES)
	rm -f $(VENV)/.installed-test-* && touch $@

# The lock: every runtime, test and deploy dependency and the build backend, for Python 3.11 on
# Linux x86_64 with the CPU build of torch 2.13.0, resolved by pip-compile (its own venv, so the
# project's stays as locked). The build label is dropped from torch's pin (2.13.0+cpu -> 2.13.0).
LOCK_VENV := $(VENV)-lock
LOCK_ARGS := --quiet --allow-unsafe --strip-extras --all-build-deps --extra test --extra deploy \
	--no-emit-index-url --no-emit-find-links --constraint <(echo "torch==2.13.0")
# Data samples are packages the tests read files from and never import (skfolio's S&P 500 closes for
# benchmarks/bench_real.py). They are installed with --no-deps and pinned at the end of the lock by
# hand, because their own requirements cannot be co-resolved (skfolio needs plotly>=6, vectorbt <6).
DATA_SAMPLES := skfolio
DATA_SAMPLE_PINS := skfolio==1.12.2
lock lock-upgrade: LOCK := requirements.lock
lock lock-upgrade:
	@test -x $(LOCK_VENV)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install --quiet "$(PIP_TOOLS)"; }
	CUSTOM_COMPILE_COMMAND="make $@" $(LOCK_VENV)/bin/pip-compile $(LOCK_ARGS) $(if $(filter lock-upgrade,$@),--upgrade) \
		--output-file $(LOCK) pyproject.toml
	sed -i -E 's/^(torch==[^+ ]+)\+[a-z0-9.]+/\1/' $(LOCK)
	printf '%s\n' "# data samples, installed with --no-deps (Makefile DATA_SAMPLES; their requirements are not locked)" \
		$(foreach pin,$(DATA_SAMPLE_PINS),"$(pin)") >> $(LOCK)

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
