# Riskwire: the README's two commands are `make run` and `make test`.
#
# Python packages go into a local virtualenv (.venv) through uv, whose cache (~/.cache/uv) makes
# every install after the first on a machine a matter of seconds -- including the multi-GB torch
# wheel, which is pinned once in pyproject.toml's `train` extra.

PYTHON  ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
PY      := $(BIN)/python
UV      := $(BIN)/uv
STAMP   := $(VENV)/.installed
CONFIG  ?= monitor/demo/riskwire.yaml
MODEL   ?= models/default
KAFKA_PORT ?= 19092
PYTEST_ARGS ?=

export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1

.PHONY: run test install model kafka-jars kafka-up kafka-down lint format clean help

help:
	@echo "make run         run the daemon on the embedded bus with the demo feeds (builds what is missing)"
	@echo "make test        install, lint, start a local Kafka broker, run the test suite, stop the broker"
	@echo "make model       train + export the default model into $(MODEL)"
	@echo "make kafka-up    start a local Kafka broker on 127.0.0.1:$(KAFKA_PORT) (make kafka-down stops it)"
	@echo "make lint        ruff and mypy"

$(PY):
	@echo ">> creating virtualenv $(VENV)"
	$(PYTHON) -m venv $(VENV)

$(UV): | $(PY)
	@$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.8

$(STAMP): pyproject.toml | $(UV)
	@echo ">> installing riskwire with the train, dev and replay extras into $(VENV) (first time on a machine: several GB)"
	$(UV) pip install --python $(PY) -e '.[train,dev,replay]'
	@touch $(STAMP)

install: $(STAMP)

$(MODEL)/manifest.json: | $(STAMP)
	@echo ">> no model in $(MODEL): training the default model (progress below; see README)"
	$(BIN)/riskwire train --out $(MODEL)

model: $(MODEL)/manifest.json

run: $(STAMP) $(MODEL)/manifest.json
	$(BIN)/riskwire run --config $(CONFIG)

kafka-jars: | $(PY)
	@$(PY) deploy/kafka/local_kafka.py fetch

kafka-up: kafka-jars
	@$(PY) deploy/kafka/local_kafka.py up --port $(KAFKA_PORT)

kafka-down:
	@$(PY) deploy/kafka/local_kafka.py down

# The broker runs on a free port in a fresh folder for this run only, and is stopped by its own
# pid whatever pytest's outcome; the target exits with pytest's status.
test: $(STAMP) kafka-jars
	@echo ">> lint: ruff and mypy (strict)"
	@$(BIN)/ruff check monitor exporters tests deploy
	@$(BIN)/ruff format --check --quiet monitor exporters tests deploy
	@$(BIN)/mypy
	@set -u; state=$$(mktemp -d -t riskwire-kafka.XXXXXX); \
	if ! $(PY) deploy/kafka/local_kafka.py up --port 0 --dir "$$state"; then \
	  echo "could not start the test Kafka broker" >&2; rm -rf "$$state"; exit 1; fi; \
	boot=$$(cat "$$state/bootstrap"); \
	echo ">> test Kafka broker serving on $$boot"; \
	RISKWIRE_TEST_KAFKA_BOOTSTRAP=$$boot $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	$(PY) deploy/kafka/local_kafka.py down --dir "$$state"; \
	echo ">> test Kafka broker on $$boot stopped"; \
	rm -rf "$$state"; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check monitor exporters tests deploy
	$(BIN)/ruff format --check monitor exporters tests deploy
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format monitor exporters tests deploy
	$(BIN)/ruff check --fix monitor exporters tests deploy

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
