# The two commands: `make demo` and `make test`. Both set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean services deploy-check

# Installed under both locks: the runtime dependencies at the versions the image ships, the test
# tools at the versions the suite last passed with (scripts/lock-dev.sh), so a new release
# upstream cannot change what a fresh clone runs.
$(STAMP): pyproject.toml deploy/requirements.lock scripts/dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -c deploy/requirements.lock -c scripts/dev.lock
	touch $(STAMP)

services:
	@scripts/ensure-services.sh

## make demo: sandbox + pipeline + a seeded workload, ends with a delivery report
demo: $(STAMP)
	$(BIN)/floodgate demo

## make test: lint, types, the deployment checks, then the whole suite (real Redis, real processes)
test: $(STAMP) services lint typecheck deploy-check
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy shared services sandbox floodgate

## make deploy-check: kustomize overlays, kubernetes-validate, CRD schemas, promtool (offline, seconds)
deploy-check: $(STAMP)
	scripts/deploy-check.sh $(VENV)

bench: $(STAMP) services
	$(BIN)/python bench/pipeline_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
