# reviewflow — operator and developer commands. `make help` lists them.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# Prefect state for commands run from this Makefile stays inside the project.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export GX_ANALYTICS_ENABLED := False
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: help install demo test test-under-load lint bench bench-quick lock clean-data postgres

help:
	@echo "make demo    train a first model on the bundled sample if needed, then score the sample inbox"
	@echo "make test    run the whole test suite"
	@echo "make test-under-load  the suite beside LOAD_BURNERS (4) CPU-burning processes"
	@echo "make bench   run the benchmarks and rewrite BENCHMARKS.md (SECTIONS=\"peers gpu\": only those, reported under benchmarks/.work/)"
	@echo "make bench-quick  a smoke run of every section, reported under benchmarks/.work/"
	@echo "make lint    ruff"
	@echo "make clean-data  empty the data root's runtime folders (DATA=data): inbox, labeled, scored, quarantine, models, state, archive, monitoring, production_accuracy"
	@echo "make postgres  a throwaway local PostgreSQL for REVIEWFLOW_STATE_URL (data in .postgres/)"
	@echo "make server  Prefect's server (PostgreSQL if PREFECT_API_DATABASE_CONNECTION_URL names one; beyond 127.0.0.1 only with PREFECT_SERVER_API_AUTH_STRING); deployments/README.md"

install: $(VENV)/.installed

# The venv is rebuilt whenever the lock or the project metadata changes. pip byte-compiles
# what it installs one file at a time; compileall does the same on every core (figures in
# docs/development.md, "Tests").
$(VENV)/.installed: requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "reviewflow needs Python 3.11; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-compile -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib
	@touch $@

demo: install
	$(BIN)/reviewflow demo

# Three pytest-xdist workers on two cores (TEST_WORKERS=1 runs the suite in one process):
# most tests wait on subprocesses and servers, and with two workers about 15% of the cores
# stayed idle (docs/development.md, "Tests").
TEST_WORKERS ?= 3
# Each test's CPU, its own and its child processes' (tests/cpu_report.py); the run ends with
# the test files costing the most.
TEST_CPU_REPORT ?= .test-cpu.tsv
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --durations=30 --cpu-report=$(TEST_CPU_REPORT)

# The suite on a busy host: LOAD_BURNERS processes each keep a core busy for the whole run
# (tests/conftest.py, --cpu-burners). With 4 on 2 cores the load average is about 5-7.
LOAD_BURNERS ?= 4
test-under-load: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --cpu-burners $(LOAD_BURNERS)

lint: install
	$(BIN)/ruff check .

# SECTIONS="peers gpu" (or peers,gpu) runs only those sections (`python -m benchmarks.run
# --list`); a partial run writes its report under benchmarks/.work/, as a quick one does.
comma := ,
BENCH_SECTIONS = $(if $(SECTIONS), --sections $(subst $(comma), ,$(SECTIONS)))
bench: install
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.lock
	$(BIN)/python -m benchmarks.run$(BENCH_SECTIONS)

# Small sizes; writes benchmarks/.work/BENCHMARKS.md, never the committed report.
bench-quick: install
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.lock
	$(BIN)/python -m benchmarks.run --quick$(BENCH_SECTIONS)

# Re-resolve the lock from pyproject's ranges (needs the registry); review the diff before committing.
lock:
	rm -rf /tmp/reviewflow-lock && $(PYTHON) -m venv /tmp/reviewflow-lock
	/tmp/reviewflow-lock/bin/pip install --quiet -e '.[test]'
	/tmp/reviewflow-lock/bin/pip freeze --exclude-editable | sed '/^reviewflow/d' > requirements.lock.new
	@echo "wrote requirements.lock.new"

# A local PostgreSQL 15 for trying REVIEWFLOW_STATE_URL: data in .postgres/ (kept between
# runs; delete the folder to start afresh), in the foreground until Ctrl-C; prints the URL.
postgres: install
	$(BIN)/python -m deployments.local_postgres $(CURDIR)/.postgres

# What runs and users put in the data root (DATA, default data/): its folders are
# DataLayout.data_folders() and the default state folder, its file the state marker
# (tasks/layout.py); tests/test_layout.py checks these lists against it and .gitignore.
DATA ?= data
DATA_FOLDERS := incoming labeled unlabeled scored quarantine models state archive monitoring production_accuracy
DATA_FILES := .reviewflow-state.json
clean-data:
	@for folder in $(addprefix $(DATA)/,$(DATA_FOLDERS)); do \
	  if [ -d "$$folder" ]; then find "$$folder" -mindepth 1 -maxdepth 1 ! -name .gitkeep -exec rm -rf {} +; fi; \
	done
	rm -f $(addprefix $(DATA)/,$(DATA_FILES))

# ---- operator targets (deployments) ----
# Scheduled runs under a local Prefect server with process workers (deployments/README.md).
# In separate terminals: `make server`, then `make pools deploy`, `make worker-scoring`,
# `make worker-training`; then `make run-retrain` / `make run-score`, or wait for the
# schedules. `make serve` is the one-process alternative with no pool and no worker.
API_HOST ?= 127.0.0.1
API_PORT ?= 4200
API_URL  ?= http://$(API_HOST):$(API_PORT)/api
# Only these targets talk to the server (an exported PREFECT_API_URL wins); `demo` and
# `test` keep Prefect's no-server mode.
OPERATOR_TARGETS := pools deploy worker-scoring worker-training run-score run-retrain serve
$(OPERATOR_TARGETS): export PREFECT_API_URL ?= $(API_URL)

.PHONY: server pools deploy worker-scoring worker-training run-score run-retrain serve

# The server's database: PostgreSQL when PREFECT_API_DATABASE_CONNECTION_URL (or its newer
# name PREFECT_SERVER_DATABASE_CONNECTION_URL, which Prefect reads first) names one, else
# SQLite in its own Prefect home, apart from no-server runs. Read with $(value): a URL may
# hold Prefect's literal ${PREFECT_API_DATABASE_PASSWORD}, which make must not expand.
SERVER_DB_URL = $(or $(value PREFECT_SERVER_DATABASE_CONNECTION_URL),$(value PREFECT_API_DATABASE_CONNECTION_URL))
LOOPBACK_HOSTS := 127.% localhost ::1
# Checked when make reads this file, so a refusal comes before `install` and prints one
# line: anyone who can reach a port without the auth string may create deployments,
# change their data_dir and start runs; a plain postgresql:// URL would make Prefect
# look for psycopg2 (not installed) and fail with a traceback.
ifneq ($(filter server,$(MAKECMDGOALS)),)
ifeq ($(filter $(LOOPBACK_HOSTS),$(API_HOST)),)
ifeq ($(value PREFECT_SERVER_API_AUTH_STRING),)
$(error make server: API_HOST=$(API_HOST) lets other hosts reach the Prefect API and PREFECT_SERVER_API_AUTH_STRING is not set; export PREFECT_SERVER_API_AUTH_STRING=user:password first (deployments/README.md), or keep API_HOST=127.0.0.1)
endif
endif
ifneq ($(filter postgres://% postgresql://%,$(SERVER_DB_URL)),)
$(error make server: the database URL must start with postgresql+asyncpg:// (Prefect's server needs the asyncpg driver))
endif
endif

server: install
	@mkdir -p $(CURDIR)/.prefect/server
	@echo "Prefect server database: $(if $(SERVER_DB_URL),PostgreSQL (from the connection URL in the environment),SQLite in .prefect/server/)"
	PREFECT_HOME=$(CURDIR)/.prefect/server PREFECT_SERVER_ANALYTICS_ENABLED=false \
	  $(BIN)/prefect server start --host $(API_HOST) --port $(API_PORT)

pools: install
	$(BIN)/prefect work-pool create reviewflow-scoring --type process --overwrite
	$(BIN)/prefect work-pool create reviewflow-training --type process --overwrite

# Set REVIEWFLOW_DATA_DIR / REVIEWFLOW_PROJECT_DIR to deploy other paths (prefect.yaml).
deploy: install
	$(BIN)/prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml

worker-scoring: install
	$(BIN)/prefect worker start --pool reviewflow-scoring

worker-training: install
	$(BIN)/prefect worker start --pool reviewflow-training

run-score: install
	$(BIN)/prefect deployment run 'score-reviews/scheduled' --watch

run-retrain: install
	$(BIN)/prefect deployment run 'retrain-model/nightly' --watch

serve: install
	$(BIN)/python deployments/serve.py
