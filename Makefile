# makemore-sweep: `make train` sets up and runs the default job; `make test` sets up and runs the tests.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
DASHBOARD_STAMP := $(VENV)/.installed-dashboard
# names.txt: data/names.txt if you have it, else the shared copy beside a checkout, else download.
NAMES ?= $(firstword $(wildcard data/names.txt ../shared/data/names.txt))
DATA_ARG := $(if $(NAMES),data.path=$(abspath $(NAMES)),)
ARGS ?=
PYTEST_ARGS ?=
# pytest-xdist workers for make test: one per core (each keeps its share, tests/conftest.py);
# TEST_WORKERS=0 runs the tests in this one process.
TEST_WORKERS ?= auto
# make sync: the folder whose offline W&B runs to upload (a multirun folder, or all of multirun/).
RUNS ?= multirun
SYNC_ARGS ?=
# make dashboard: the study's Optuna storage, its name, and the port on 127.0.0.1.
STORAGE ?=
STUDY ?=
PORT ?= 8080

.PHONY: install dev train test test-fast lint bench sync dashboard clean help

help:
	@echo "make train   set up (.venv) and train the default model (ARGS='key=value ...' to override)"
	@echo "make test    set up the dev dependencies and run the test suite"
	@echo "make test-fast   the tests without the slow and service ones (a few minutes)"
	@echo "make lint    ruff check, ruff format --check (src, tests, scripts) and mypy (src)"
	@echo "make bench   run the benchmarks (scripts/) and print their figures"
	@echo "make sync    upload the offline W&B runs under RUNS=multirun/DATE/TIME (after wandb login)"
	@echo "make dashboard STORAGE=URL [STUDY=NAME] [PORT=8080]   optuna-dashboard on 127.0.0.1"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(DASHBOARD_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dashboard]'
	touch $@

install: $(STAMP)

dev: $(DEV_STAMP)

train: $(STAMP)
	$(VENV)/bin/makemore-train $(DATA_ARG) $(ARGS)

# Two passes: the tests side by side (-n), then the `exclusive` ones (SLURM) alone. Exit 5
# (nothing selected, as when PYTEST_ARGS names one test) is no failure of a pass.
PASS_OK := s=$$?; [ $$s -eq 0 ] || [ $$s -eq 5 ] || exit $$s

test: $(DEV_STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not exclusive" $(PYTEST_ARGS); $(PASS_OK)
	$(PY) -m pytest -m exclusive $(PYTEST_ARGS); $(PASS_OK)

test-fast: $(DEV_STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not slow and not service" $(PYTEST_ARGS)

# All three checks run (and print) even when one fails; the target fails if any did.
lint: $(DEV_STAMP)
	@status=0; \
	echo "ruff check src tests scripts"; $(VENV)/bin/ruff check src tests scripts || status=1; \
	echo "ruff format --check src tests scripts"; $(VENV)/bin/ruff format --check src tests scripts || status=1; \
	echo "mypy (src, settings in pyproject.toml)"; $(VENV)/bin/mypy || status=1; \
	exit $$status

bench: $(DEV_STAMP)
	$(PY) scripts/bench_step.py

sync: $(STAMP)
	@runs=$$(find $(RUNS) -type d -name 'offline-run-*' -path '*/wandb/*' 2>/dev/null); \
	test -n "$$runs" || { echo "no offline W&B runs under $(RUNS); set RUNS=multirun/DATE/TIME" >&2; exit 2; }; \
	$(VENV)/bin/wandb sync $(SYNC_ARGS) $$runs

dashboard: $(DASHBOARD_STAMP)
	@test -n "$(STORAGE)" || { echo "usage: make dashboard STORAGE=sqlite:///FILE.db [STUDY=NAME] [PORT=8080]" >&2; exit 2; }
	$(PY) -m makemore_sweep.cli.dashboard --storage '$(STORAGE)' $(if $(STUDY),--study '$(STUDY)') --port $(PORT)

clean:
	rm -rf outputs multirun studies reports .pytest_cache
