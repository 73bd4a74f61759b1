# Obvious targets. `make run` and `make test` are the two README commands.
.PHONY: run test unit integration lint typecheck check lock venv dev-venv train-deps clean bench

VENV := .venv
PY := $(VENV)/bin/python

venv:                ## the serving install: requirements.lock (no torch)
	@scripts/bootstrap.sh

dev-venv:            ## plus requirements-dev.lock: torch, sentence-transformers, test tools
	@scripts/bootstrap.sh dev

train-deps: dev-venv ## what finetune-router and eval-router --fine-tune need

run: venv            ## start the gateway on :4000 with the simulated provider
	$(VENV)/bin/gateway demo

test: dev-venv       ## the whole test suite (starts Redis, providers and proxies itself)
	@scripts/test-tools.sh
	$(PY) -m pytest

unit: dev-venv
	$(PY) -m pytest -m unit

integration: dev-venv
	$(PY) -m pytest -m integration

lint: dev-venv
	$(VENV)/bin/ruff check extensions tests loadtests
	$(VENV)/bin/ruff format --check extensions tests loadtests

bench: dev-venv      ## the gateway against bare LiteLLM, side by side (ratios in one run)
	$(PY) -m loadtests.benchmark --json reports/benchmark.json

typecheck: dev-venv
	$(VENV)/bin/mypy extensions

check: lint typecheck test

lock: dev-venv       ## re-pin requirements.lock (serving) and requirements-dev.lock from .venv
	$(PY) scripts/lock.py

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache reports
