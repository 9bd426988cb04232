# affresco: `make demo` runs the platform end to end; `make test` runs the whole suite.
# Both create .venv, install the project, fetch the server jars and start what they need.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
AFFRESCO := $(BIN)/affresco
PYTEST_ARGS ?=

.PHONY: setup flink-venv tools jars demo test unit lint fmt bench clean down status schemas

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,cassandra,stream,offline,ml,serve]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# PyFlink pins its own numpy/pyarrow/pandas/apache-beam: it gets a venv of its own, never .venv.
# It also holds the project without its dependencies (a Flink job imports the feature code) and the
# few light libraries that code needs at import. Installs once (~1 min, ~850 MB); `infra up --with flink`
# runs the cluster's Python workers with $(FLINK_VENV)/bin/python.
FLINK_VENV    := .venv-flink
FLINK_VERSION := 2.2.1
FLINK_EXTRAS  := pydantic>=2.7,<3 pydantic-settings>=2.3,<3 pyyaml>=6 orjson>=3.10 confluent-kafka>=2.4,<3 cassandra-driver>=3.29,<4
FLINK_STAMP   := $(FLINK_VENV)/.installed-$(shell (echo '$(FLINK_VERSION) $(FLINK_EXTRAS)'; cat pyproject.toml) | cksum | cut -d' ' -f1)

flink-venv: $(FLINK_STAMP)

$(FLINK_STAMP): pyproject.toml
	@test -x $(FLINK_VENV)/bin/python || $(PYTHON) -m venv $(FLINK_VENV)
	$(FLINK_VENV)/bin/python -m pip install -q --upgrade pip
	$(FLINK_VENV)/bin/python -m pip install -q 'apache-flink==$(FLINK_VERSION)' $(foreach p,$(FLINK_EXTRAS),'$(p)')
	$(FLINK_VENV)/bin/python -m pip install -qq --no-deps -e .
	@rm -f $(FLINK_VENV)/.installed-*
	@touch $@

jars: setup
	$(AFFRESCO) infra fetch

# kcat (Debian) writes records as a non-Python producer would: the tests use it for the wire format.
tools:
	@command -v kcat >/dev/null || apt-get install -y -q kcat >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null 2>&1 && apt-get install -y -q kcat >/dev/null) || \
		{ echo "kcat is needed by the tests: install it (apt-get install -y kcat)" >&2; exit 1; }
	@command -v chromium >/dev/null || apt-get install -y -q chromium >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null) || \
		{ echo "chromium renders the reports in the tests: install it (apt-get install -y chromium)" >&2; exit 1; }

demo: jars
	$(AFFRESCO) infra up
	$(AFFRESCO) demo

# Starts Kafka and Cassandra unless they already run, runs every test, and stops only what it started.
# The Flink tests start their own cluster from $(FLINK_VENV).
test: jars tools flink-venv
	@bash infra/with-services.sh kafka,cassandra -- $(BIN)/pytest $(PYTEST_ARGS)

unit: setup
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

schemas: setup
	$(AFFRESCO) schemas export

# Each benchmark prints one JSON line (figures and machine in README.md). ~12 minutes in all.
bench: jars
	@bash infra/with-services.sh kafka,cassandra -- sh -c '$(BIN)/python -m bench.produce && \
		$(BIN)/python -m bench.processor && $(BIN)/python -m bench.freshness && $(BIN)/python -m bench.online_get && \
		$(BIN)/python -m bench.backfill && $(BIN)/python -m bench.pit_join && $(BIN)/python -m bench.recovery && \
		$(BIN)/python -m bench.train && $(BIN)/python -m bench.serving && \
		$(BIN)/python -m bench.monitor'


status: setup
	$(AFFRESCO) infra status

down: setup
	$(AFFRESCO) infra down

clean: down
	rm -rf .affresco
