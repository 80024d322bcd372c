# Set-up and checks. `make run` tries the gateway; `make test` runs every check CI runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: start the gateway on gateway.yaml (embedded store, demo key printed)
run: $(STAMP)
	$(BIN)/gateway serve --config gateway.yaml

## test: lint, type-check and run the tests against a real redis-server on loopback
test: $(STAMP)
	$(BIN)/ruff check gateway plugins tests bench
	$(BIN)/ruff format --check gateway plugins tests bench
	$(BIN)/mypy gateway plugins/gateway_plugins
	tests/with-redis.sh $(BIN)/python -m pytest $(PYTEST_ARGS)

## bench: direct vs through-the-gateway throughput and latency (not a test; not in CI)
bench: $(STAMP)
	tests/with-redis.sh $(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
