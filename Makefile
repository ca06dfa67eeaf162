# sgmteach: `make lab` opens the tutorials, `make test` runs the whole suite.
# Both create .venv on first use; re-running them installs nothing when pyproject.toml
# has not changed (the stamp file .venv/.installed is newer than it).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
PORT   ?= 8888

.PHONY: lab test unit notebooks bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q 'torch==2.13.0'
	touch $(BENCH_STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=tutorials --port=$(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests
	$(BIN)/python -m pytest -q --nbval-lax --nbval-current-env tutorials

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests

notebooks: $(STAMP)
	$(BIN)/python -m pytest -q --nbval-lax --nbval-current-env tutorials

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/train_to_quality.py
	$(BIN)/python benchmarks/sampling.py

lint: $(STAMP)
	$(BIN)/ruff check sgmteach widgets tests benchmarks

clean:
	rm -rf $(VENV)
