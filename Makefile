# `make run`: the hub on its embedded defaults. `make test`: everything CI runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= conf/hub.yaml

.PHONY: run test lint bench clean system-deps

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

# Each prints its figures; together about 15 minutes on 2 cores. Not part of `make test`.
bench: $(STAMP) system-deps
	$(BIN)/python scripts/bench_journal.py
	$(BIN)/python scripts/bench_influx.py
	$(BIN)/python scripts/bench_dtu.py
	$(BIN)/python scripts/bench_mqtt.py --broker-only
	$(BIN)/python scripts/bench_mqtt.py --engine native
	$(BIN)/python scripts/bench_lwm2m.py
	$(BIN)/python scripts/bench_sms.py --alarms 200
	$(BIN)/python scripts/bench_gb26875.py
	$(BIN)/python scripts/bench_api.py

clean:
	rm -rf $(VENV) var *.egg-info
