# reviewflow — operator and developer commands. `make help` lists them.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# Prefect state for commands run from this Makefile stays inside the project.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export GX_ANALYTICS_ENABLED := False
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: help install demo test lint bench lock clean-data

help:
	@echo "make demo    train a first model on the bundled sample if needed, then score the sample inbox"
	@echo "make test    run the whole test suite"
	@echo "make bench   run the benchmarks and rewrite BENCHMARKS.md"
	@echo "make lint    ruff"

install: $(VENV)/.installed

# The venv is rebuilt whenever the lock or the project metadata changes.
$(VENV)/.installed: requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "reviewflow needs Python 3.11; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

demo: install
	$(BIN)/reviewflow demo

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.lock
	$(BIN)/python -m benchmarks.run

# Re-resolve the lock from pyproject's ranges (needs the registry); review the diff before committing.
lock:
	rm -rf /tmp/reviewflow-lock && $(PYTHON) -m venv /tmp/reviewflow-lock
	/tmp/reviewflow-lock/bin/pip install --quiet -e '.[test]'
	/tmp/reviewflow-lock/bin/pip freeze --exclude-editable | sed '/^reviewflow/d' > requirements.lock.new
	@echo "wrote requirements.lock.new"

clean-data:
	find data/incoming data/labeled data/scored data/quarantine data/models data/state data/archive -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
