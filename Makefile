# sgmteach: `make lab` opens the tutorials, `make test` runs the whole suite.
# Both create .venv on first use; re-running them installs nothing when pyproject.toml
# has not changed (the stamp file .venv/.installed is newer than it).
# `make binder-check` (last step of `make test`) rebuilds the Binder environment in
# .binder-venv from binder/requirements.txt and binder/postBuild alone, runs every notebook in
# it and fails above 1500 MB peak memory; it reuses .binder-venv while those files are unchanged.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
PORT   ?= 8888
BINDER_CHECK := tools/binder_check.py
# A notebook cell that runs 10 minutes has hung (the slowest takes under a minute).
NBVAL_TIMEOUT := --nbval-cell-timeout=600

.PHONY: lab test unit notebooks binder-check binder-lock bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q 'torch==2.13.0'
	touch $(BENCH_STAMP)

# JupyterLab refuses to run as root unless told; containers and CI machines often are root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=tutorials --port=$(PORT) $(ROOT_FLAG)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests
	$(BIN)/python -m pytest -q --nbval-lax --nbval-current-env $(NBVAL_TIMEOUT) tutorials
	$(BIN)/python $(BINDER_CHECK) check

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests

notebooks: $(STAMP)
	$(BIN)/python -m pytest -q --nbval-lax --nbval-current-env $(NBVAL_TIMEOUT) tutorials

# Standard library only; runs with .venv's Python (3.11+) but builds .binder-venv with the
# Python that binder/runtime.txt names when it is on PATH.
binder-check: $(STAMP)
	$(BIN)/python $(BINDER_CHECK) check

# Regenerate binder/requirements.txt after changing dependencies in pyproject.toml.
binder-lock: $(STAMP)
	$(BIN)/python $(BINDER_CHECK) lock

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/train_to_quality.py
	$(BIN)/python benchmarks/sampling.py
	$(BIN)/python benchmarks/widget_latency.py
	$(BIN)/python benchmarks/gpu_scale.py
	$(BIN)/python benchmarks/equivariant_cost.py

lint: $(STAMP)
	$(BIN)/ruff check sgmteach widgets tests benchmarks tools tutorials

clean:
	rm -rf $(VENV) .binder-venv
