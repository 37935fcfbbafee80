# mqtthub developer commands. `make run` and `make test` work on a fresh Debian machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: run test test-brokers lint unit integration system-deps clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[test,bench]"
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

# The broker matrix with the brokers make test does not install, besides Mosquitto and the
# embedded rumqttd: Aedes (npm ci from tests/brokers/aedes/package-lock.json) and amqtt
# (pip, pinned in tests/brokers/amqtt/requirements.txt, in a venv of its own: it pins
# libraries mqtthub's venv must not get). CI runs it after make test (.ci/run).
AMQTT_VENV := .venv-amqtt
AEDES_STAMP := tests/brokers/aedes/node_modules/.package-lock.json
AMQTT_STAMP := $(AMQTT_VENV)/.installed

$(AEDES_STAMP): tests/brokers/aedes/package.json tests/brokers/aedes/package-lock.json
	cd tests/brokers/aedes && npm ci --no-audit --no-fund --silent
	touch $(AEDES_STAMP)

$(AMQTT_STAMP): tests/brokers/amqtt/requirements.txt
	python3 -m venv $(AMQTT_VENV)
	$(AMQTT_VENV)/bin/pip install --quiet -r tests/brokers/amqtt/requirements.txt
	touch $(AMQTT_STAMP)

test-brokers: $(STAMP) system-deps $(AEDES_STAMP) $(AMQTT_STAMP)
	MQTTHUB_TEST_BROKERS=aedes,amqtt $(PY) -m pytest tests/brokers

unit: $(STAMP)
	$(PY) -m pytest tests/unit

clean:
	rm -rf $(VENV) $(AMQTT_VENV) data .pytest_cache .mypy_cache .ruff_cache
