# `make run`: the hub on its embedded defaults. `make test`: everything CI runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= conf/hub.yaml

.PHONY: run test test-unit lint bench clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

run: $(STAMP)
	$(BIN)/hub run -c $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check hub plugins tests scripts

system-deps:
	bash scripts/install-system-deps.sh

test: $(STAMP) system-deps lint
	$(BIN)/python -m pytest

# The pure-code tests alone (no process, service or socket; the store tests' PostgreSQL runs
# are left out): about a minute.
test-unit: $(STAMP) lint
	$(BIN)/python -m pytest tests/unit -m 'not postgresql'

# Each prints its figures; together about 15 minutes on 2 cores. Not part of `make test`.
bench: $(STAMP) system-deps
	$(BIN)/python -m scripts.bench_journal
	$(BIN)/python -m scripts.bench_influx
	$(BIN)/python -m scripts.bench_dtu
	$(BIN)/python -m scripts.bench_mqtt --broker-only
	$(BIN)/python -m scripts.bench_mqtt --engine native
	$(BIN)/python -m scripts.bench_lwm2m
	$(BIN)/python -m scripts.bench_sms --alarms 200
	$(BIN)/python -m scripts.bench_alarms
	$(BIN)/python -m scripts.bench_gb26875
	$(BIN)/python -m scripts.bench_api
	$(BIN)/python -m scripts.bench_cluster

clean:
	rm -rf $(VENV) var *.egg-info
