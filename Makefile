# makemore-sweep: `make train` sets up and runs the default job; `make test` sets up and runs the tests.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# names.txt: data/names.txt if you have it, else the shared copy beside a checkout, else download.
NAMES ?= $(firstword $(wildcard data/names.txt ../shared/data/names.txt))
DATA_ARG := $(if $(NAMES),data.path=$(abspath $(NAMES)),)
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install dev train test bench sync dashboard clean help

help:
	@echo "make train   set up (.venv) and train the default model (ARGS='key=value ...' to override)"
	@echo "make test    set up the dev dependencies and run the test suite"
	@echo "make bench   run the benchmarks (scripts/) and print their figures"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

dev: $(DEV_STAMP)

train: $(STAMP)
	$(VENV)/bin/makemore-train $(DATA_ARG) $(ARGS)

test: $(DEV_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(DEV_STAMP)
	$(PY) scripts/bench_step.py

clean:
	rm -rf outputs multirun studies reports .pytest_cache
