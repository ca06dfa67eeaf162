# sgmteach: `make lab` opens the tutorials, `make test` runs the whole suite.
#
# Both create .venv on first use (Python >= 3.11 with its venv module; PYTHON=... picks one).
# `make lab` installs sgmteach and what a learner needs (`pip install -e .`); `make test` and
# the other developer targets add the `dev` extra (pytest, nbval, ruff, Playwright ...). Each
# install is a stamp file in .venv that is newer than pyproject.toml, so re-running a target
# installs nothing until pyproject.toml changes.
#
# `make test` = `pytest -q tests` (unit, widget and browser tests) + `make binder-check`.
# binder-check rebuilds the Binder environment in .binder-venv from binder/requirements.txt and
# binder/postBuild alone (reused while those files are unchanged), runs every notebook in it
# through binder/start as mybinder.org does, and fails above 1500 MB peak memory. That is the
# one run of each notebook: `make test` does not run them in .venv as well, which would double
# the longest part of the suite. `make notebooks` runs them in .venv only, when you want that.
#
# CI time budget: `.ci/run` on a fresh clone, on the 2-core machine. Measured twice (2026-12):
# an idle machine, and a slow one on which every step took 2-5x longer.
#   unit + widget + browser tests       ~8 min idle, 20 min slow (467 tests)
#   Binder environment build            ~2 min
#   each tutorial                       ~1-1.5 min idle, ~3 min slow (nbval + peak memory)
#   plus building .venv (under a minute with a warm pip cache) and installing chromium.
#   Today, 7 tutorials: measured ~30 min idle (2026-12-03); must stay well inside 90 minutes.
#   Planned, 11 tutorials: ~8 + 2 + 16 = ~26 min idle; keep it under 45 min idle.

PYTHON ?= python3
# VENV can be overridden (`make VENV=/tmp/v ...`), e.g. to try a fresh environment.
VENV   := .venv
BIN    := $(VENV)/bin
# What `make lab` needs: sgmteach and its runtime dependencies (JupyterLab, widgets, JAX).
LAB_STAMP   := $(VENV)/.installed-lab
# The `dev` extra on top: the test, notebook and lint tools.
DEV_STAMP   := $(VENV)/.installed-dev
# The `bench` extra on top of that: PyTorch, for the baselines in benchmarks/.
BENCH_STAMP := $(VENV)/.installed-bench
PORT   ?= 8888
BINDER_CHECK := tools/binder_check.py
# A notebook cell that runs 10 minutes has hung (the slowest takes under a minute).
NBVAL_TIMEOUT := --nbval-cell-timeout=600

.PHONY: lab test unit notebooks binder-check binder-lock bench screenshots lint clean

# Two checks before `python -m venv`, each failing with one line that says what to install,
# because otherwise the failure is a traceback or worse:
# - Python < 3.11: the venv would be built and pip would fail deep in its output ("requires a
#   different Python").
# - Debian/Ubuntu without python3-venv: the venv module is there but ensurepip is not (it ships
#   in the python3.X-venv package), and `python3 -m venv` leaves a half-made .venv behind.
# If creating the environment still fails, the half-made one is removed so the next run retries.
PY_VERSION = $$($(PYTHON) --version 2>&1 | grep -o 'Python [0-9.]*' || echo 'missing or not a working Python')
PY_VENV_PKG = $$($(PYTHON) -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])')
NEED_PY311 = make: sgmteach needs Python >= 3.11 but PYTHON=$(PYTHON) is $(PY_VERSION); \
  install Python 3.11 or later, or name one: make PYTHON=python3.12 ...
NEED_VENV = make: $(PYTHON) cannot create a virtual environment (no ensurepip module); \
  on Debian/Ubuntu: apt-get install $(PY_VENV_PKG) (python3-venv for the default python3)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	  || { echo "$(NEED_PY311)" >&2; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { echo "$(NEED_VENV)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip

$(LAB_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

# `.[dev]` includes everything `.` installs, so the lab stamp is made current too.
$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(LAB_STAMP)

# The torch pin lives in one place, pyproject.toml's `bench` extra. On this project's machines
# pip finds a CPU build of torch 2.13.0 locally. On a stock Linux machine PyPI's torch is the
# CUDA build (several GB); for the CPU build, give pip PyTorch's CPU wheel index:
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu make bench
# pip then takes torch 2.13.0+cpu (a local version sorts above plain 2.13.0). Add the index
# rather than replace the default one (PIP_INDEX_URL, --index-url): it serves torch and its
# own dependencies, not JAX or JupyterLab. benchmarks/README.md says the same.
$(BENCH_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $@ $(DEV_STAMP) $(LAB_STAMP)

# JupyterLab refuses to run as root unless told; containers and CI machines often are root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

# Opens a browser when it can; otherwise open the http://127.0.0.1:PORT/lab?token=... address
# it prints. Ctrl-C in this terminal stops it.
lab: $(LAB_STAMP)
	$(BIN)/jupyter lab --notebook-dir=tutorials --port=$(PORT) $(ROOT_FLAG)

# Two separate lines, not `test: unit binder-check`: under `make -j` those would run at once,
# which a 2-core machine cannot afford and which would spoil binder-check's memory numbers.
test: $(DEV_STAMP)
	$(BIN)/python -m pytest -q tests
	$(BIN)/python $(BINDER_CHECK) check

unit: $(DEV_STAMP)
	$(BIN)/python -m pytest -q tests

# Optional, not part of `make test`: every notebook through nbval in .venv (quicker to iterate
# on than binder-check, which is the run that counts).
notebooks: $(DEV_STAMP)
	$(BIN)/python -m pytest -q --nbval-lax --nbval-current-env $(NBVAL_TIMEOUT) tutorials

# Standard library only; runs with .venv's Python (3.11+) but builds .binder-venv with the
# Python that binder/runtime.txt names when it is on PATH.
binder-check: $(DEV_STAMP)
	$(BIN)/python $(BINDER_CHECK) check

# Regenerate binder/requirements.txt after changing dependencies in pyproject.toml.
binder-lock: $(DEV_STAMP)
	$(BIN)/python $(BINDER_CHECK) lock

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/train_to_quality.py
	$(BIN)/python benchmarks/sampling.py
	$(BIN)/python benchmarks/widget_latency.py
	$(BIN)/python benchmarks/gpu_scale.py
	$(BIN)/python benchmarks/equivariant_cost.py
	$(BIN)/python benchmarks/control_variate.py
	$(BIN)/python benchmarks/proximal_flow.py
	$(BIN)/python benchmarks/gpa.py

# The README's screenshots: the browser test's before/after pictures of one explorer's move.
screenshots: $(DEV_STAMP)
	$(BIN)/python -m pytest -q tests/browser -k every_explorer
	mkdir -p docs/img
	cp tests/browser/artifacts/explorer_NoiseScheduleExplorer_before.png \
	   tests/browser/artifacts/explorer_NoiseScheduleExplorer_after.png docs/img/

lint: $(DEV_STAMP)
	$(BIN)/ruff check sgmteach widgets tests benchmarks tools tutorials

clean:
	rm -rf $(VENV) .binder-venv sgmteach.egg-info build
