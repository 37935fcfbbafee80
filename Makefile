# mqtthub developer commands. `make run` and `make test` work on a fresh Debian machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: run test test-brokers lint unit integration system-deps clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[test,bench,desktop]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/mqtthub serve

system-deps:
	@./scripts/ensure-system-deps.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

test: $(STAMP) system-deps lint
	$(PY) -m pytest

# The broker matrix with the brokers make test does not install: Aedes (npm, pinned in
# tests/brokers/aedes/package.json) besides Mosquitto and the embedded rumqttd.
test-brokers: $(STAMP) system-deps
	cd tests/brokers/aedes && npm install --no-audit --no-fund --silent
	MQTTHUB_TEST_BROKERS=aedes $(PY) -m pytest tests/brokers

unit: $(STAMP)
	$(PY) -m pytest tests/unit

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
