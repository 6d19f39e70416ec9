# The README's commands. `make run` and `make test` start local Kafka and Postgres
# themselves unless CRONSTREAM_KAFKA_BOOTSTRAP / CRONSTREAM_DATABASE_URL point elsewhere.

SHELL := /bin/bash
SYSTEM_PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
KAFKA_PORT ?= $(or $(CRONSTREAM_KAFKA_PORT),9092)
PG_PORT ?= $(or $(CRONSTREAM_PG_PORT),5432)
PG_PASSWORD ?= $(or $(CRONSTREAM_PG_PASSWORD),cronstream)

# Services this machine must run: those the environment does not point elsewhere.
LOCAL_SERVICES :=
ifeq ($(origin CRONSTREAM_KAFKA_BOOTSTRAP),undefined)
export CRONSTREAM_KAFKA_BOOTSTRAP := 127.0.0.1:$(KAFKA_PORT)
LOCAL_SERVICES += kafka
endif
ifeq ($(origin CRONSTREAM_DATABASE_URL),undefined)
export CRONSTREAM_DATABASE_URL := postgresql://cronstream:$(PG_PASSWORD)@127.0.0.1:$(PG_PORT)/cronstream
LOCAL_SERVICES += postgres
endif
export CRONSTREAM_KAFKA_PORT := $(KAFKA_PORT)
export CRONSTREAM_PG_PORT := $(PG_PORT)

# What `make run` tells the user to type in another shell, which has none of this make's
# variables: the local cluster by what places it; an existing server by the variable the
# user set for it (a URL may carry a password in many forms: it is never echoed).
ifneq ($(filter postgres,$(LOCAL_SERVICES)),)
PSQL_HINT = $(if $(filter-out 5432,$(PG_PORT)),CRONSTREAM_PG_PORT=$(PG_PORT) )$(if \
	$(CRONSTREAM_CACHE_DIR),CRONSTREAM_CACHE_DIR=$(CRONSTREAM_CACHE_DIR) )$(if \
	$(CRONSTREAM_PG_BIN),CRONSTREAM_PG_BIN=$(CRONSTREAM_PG_BIN) )make -C $(CURDIR) psql SQL=
else
PSQL_HINT = psql \"\$$CRONSTREAM_DATABASE_URL\" -c$(SPACE)
endif
SPACE := $(subst ,, )

.PHONY: help venv services services-down services-status migrate run psql test test-unit \
	test-integration test-tools lint format bench clean

help:
	@echo "make run              start Kafka + Postgres, migrate, run scheduler + worker on demo tables"
	@echo "make test             install, start services, lint, run every test"
	@echo "make services         start local Kafka and Postgres (services-down, services-status)"
	@echo "make psql             psql on the cronstream database (SQL=\"...\" runs one statement)"
	@echo "make lint             ruff, mypy, import contracts"
	@echo "make bench            cronstream against raw aiokafka, a hand-written loop, faust and Quix"

$(BIN)/.installed: pyproject.toml
	$(SYSTEM_PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

services: venv
ifneq ($(strip $(LOCAL_SERVICES)),)
	scripts/services.sh up $(LOCAL_SERVICES)
endif

services-down:
	scripts/services.sh down

services-status:
	scripts/services.sh status

migrate: services
	$(BIN)/cronstream migrate

run: migrate
	PGOPTIONS=--client-min-messages=warning psql "$$CRONSTREAM_DATABASE_URL" --quiet -v ON_ERROR_STOP=1 --file demo/schema.sql
	$(BIN)/cronstream --log-level WARNING publish --file demo/events.jsonl
	@echo "scheduler + worker on the demo tables. In another shell, change a row:"
	@echo "  $(PSQL_HINT)\"UPDATE demo_customers SET name = 'Ada' WHERE id = 7\""
	@echo "and see it applied:"
	@echo "  $(PSQL_HINT)\"SELECT key, payload->>'name' AS name FROM entity_projection WHERE entity = 'customer' AND key = '7'\""
	@echo "status: $(BIN)/cronstream status, or http://$${CRONSTREAM_HTTP_HOST:-127.0.0.1}:$${CRONSTREAM_HTTP_PORT:-8080}/ in a browser"
	@echo "POST /events: $(if $(CRONSTREAM_INGRESS_TOKEN),send 'Authorization: Bearer \$$CRONSTREAM_INGRESS_TOKEN',closed until you set CRONSTREAM_INGRESS_TOKEN to a token of your choice) (README: Ingress)"
	@echo "Ctrl-C stops."
	$(BIN)/cronstream --log-format text run --jobs-file demo/jobs.toml

# The password is never shown: the local cluster is reached over its own Unix socket.
psql:
ifneq ($(filter postgres,$(LOCAL_SERVICES)),)
	@scripts/postgres.sh psql $${SQL:+-c "$$SQL"}
else
	@psql "$$CRONSTREAM_DATABASE_URL" $${SQL:+-c "$$SQL"}
endif

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test-unit: venv
	$(BIN)/pytest tests/unit

# Debian packages some tests drive (chromium, kcat): installed when missing and we are root,
# otherwise the command to install it is printed and the tests go on.
test-tools:
	scripts/test-tools.sh

# Tests run in parallel, a test file per process (module fixtures, such as Kafka Connect,
# start once); each test has its own database and topics. Those that stop a shared
# service (marked serial) run alone afterwards.
TEST_PROCESSES ?= 3
PARALLEL := -n $(TEST_PROCESSES) --dist loadfile -m "not serial"

test-integration: services test-tools
	$(BIN)/pytest $(PARALLEL) tests/integration
	$(BIN)/pytest -m serial tests/integration

test: services lint test-tools
	$(BIN)/pytest $(PARALLEL)
	$(BIN)/pytest -m serial

# Quix Streams, the arm a user would most likely pick instead, pins dependencies of its
# own: it gets a virtualenv of its own and runs as a subprocess of the benchmark.
QUIX_VENV ?= .venv-quix
QUIX_SPEC ?= quixstreams[postgresql]==3.28.1

$(QUIX_VENV)/.installed:
	$(SYSTEM_PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/pip install --quiet '$(QUIX_SPEC)'
	touch $@

bench: services $(QUIX_VENV)/.installed
	BENCH_QUIX_PYTHON=$(QUIX_VENV)/bin/python $(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) $(QUIX_VENV) .mypy_cache .ruff_cache .pytest_cache
