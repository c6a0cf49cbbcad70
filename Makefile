# Community-governance warehouse: one command to try it, one to test it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .local/tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.synced-stamp
DAY ?= 2023-11-07
export XDG_RUNTIME_DIR ?= /tmp
export GX_ANALYTICS_ENABLED := False
export DBT_SEND_ANONYMOUS_USAGE_STATS := False

.PHONY: help setup warehouse generate run demo stop test test-fast lint airflow screenshots clean reconcile docs

help:
	@echo "make demo                  set up, generate one night ($(DAY)), run it through Airflow, show where to look"
	@echo "make generate DAY=…        write the Taiyuan scenario's files for a service day into LANDING_DIR"
	@echo "make run DAY=…             run the nightly DAG through Airflow over LANDING_DIR for that day"
	@echo "make warehouse | stop      start (and print the URL of) / stop the embedded PostgreSQL"
	@echo "make airflow               run Airflow locally (UI on http://localhost:8080; the DAGs start paused)"
	@echo "make docs                  serve the dbt docs and the Data Docs on http://localhost:8081 (the emails link there)"
	@echo "make screenshots           make demo, then re-take the README's Airflow UI pictures (docs/screenshots/)"
	@echo "make test                  the whole test suite (TEST_DATABASE_URL or the embedded server)"
	@echo "make test-fast             the unit tier (-m unit): readers, normalisation, PII, layout (no PostgreSQL, no Airflow)"
	@echo "make reconcile             load the programme period (2023-01-01..10-31) into gov_reconcile, build,"
	@echo "                           print published vs warehouse figures, fail on any mismatch (FROM=… TO=…)"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

# The environment comes from the committed lock file only.
$(STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

setup: $(STAMP)

warehouse: setup
	@$(VENV)/bin/gov-warehouse warehouse

generate: setup
	$(VENV)/bin/gov-warehouse generate --day $(DAY)

run: setup
	$(VENV)/bin/gov-warehouse run --day $(DAY)

demo: setup
	$(VENV)/bin/gov-warehouse generate --day $(DAY)
	$(VENV)/bin/gov-warehouse run --day $(DAY)

stop: setup
	@$(VENV)/bin/gov-warehouse stop

docs: setup
	$(VENV)/bin/gov-warehouse docs

airflow: setup
	$(VENV)/bin/gov-warehouse airflow

# The README's pictures of the Airflow UI, taken by headless Chromium from the demo's night (stop a running
# `make airflow` first: the script starts its own on a free port, on the same metadata DB).
screenshots: demo
	$(PY) -m commands.airflow_screens --day $(DAY) --out docs/screenshots

# The suite spread over TEST_WORKERS processes (pytest-xdist; pyproject's addopts: --dist loadgroup): each module
# whole in one worker, the groups of tests/conftest.py together, the slowest first (tests/README.md says how a
# new test joins a group).
# TEST_WORKERS=0 runs it in this one process; so does a run on the embedded server (no TEST_DATABASE_URL),
# where each worker would start a server of its own.
TEST_WORKERS ?= $(if $(TEST_DATABASE_URL),3,0)
test: lint
	$(PY) -m pytest -n $(TEST_WORKERS) --durations=25

# The unit tier (tests marked `unit`): pure functions of the readers, feeds, normalisation, PII handling,
# the scenario and the layout. No database is reachable from it (TEST_DATABASE_URL points nowhere), so a
# test that needs one fails here instead of quietly starting a server.
test-fast: setup
	$(PY) -m ruff check .
	TEST_DATABASE_URL=postgresql://nobody@127.0.0.1:1/none $(PY) -m pytest -q -m unit

# Reconciliation with the published figures (DESIGN.md section 9) in a database of its own (gov_reconcile).
FROM ?= 2023-01-01
TO ?= 2023-10-31
reconcile: setup
	$(VENV)/bin/gov-warehouse reconcile --from $(FROM) --to $(TO)

# ruff over the Python (with its Airflow rules), sqlfluff over the dbt SQL (.sqlfluff: jinja templater, no warehouse)
SQL_DIRS := dbt_project/models dbt_project/macros dbt_project/tests dbt_project/snapshots
lint: setup
	$(PY) -m ruff check .
	$(VENV)/bin/sqlfluff lint $(SQL_DIRS)

clean: stop
	rm -rf .local/landing .local/outbox .local/airflow .local/gx .local/dbt_target .local/logs
