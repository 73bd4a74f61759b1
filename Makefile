# Obvious targets. `make run` and `make test` are the two README commands.
.PHONY: run test unit integration lint typecheck check lock venv clean bench

VENV := .venv
PY := $(VENV)/bin/python

venv:
	@scripts/bootstrap.sh

run: venv            ## start the gateway on :4000 with the simulated provider
	$(VENV)/bin/gateway demo

test: venv           ## the whole test suite (starts Redis, providers and proxies itself)
	@scripts/test-tools.sh
	$(PY) -m pytest

unit: venv
	$(PY) -m pytest -m unit

integration: venv
	$(PY) -m pytest -m integration

lint: venv
	$(VENV)/bin/ruff check extensions tests loadtests
	$(VENV)/bin/ruff format --check extensions tests loadtests

bench: venv          ## the gateway against bare LiteLLM, side by side (ratios in one run)
	$(PY) -m loadtests.benchmark --json reports/benchmark.json

typecheck: venv
	$(VENV)/bin/mypy extensions

check: lint typecheck test

lock: venv           ## re-pin requirements.lock from the current .venv
	@{ echo "# Exact versions of every package, generated from .venv by 'make lock'. Installed by scripts/bootstrap.sh."; \
	  $(PY) -m pip freeze --all --exclude-editable | grep -v -E '^pip=='; } > requirements.lock

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache reports
