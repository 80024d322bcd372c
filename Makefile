# Set-up and checks. `make run` tries the gateway; `make test` runs every check CI runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The project with the embedded store, for `make run`.
$(VENV)/.run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[embedded]'
	touch $@

# The project with its test tools.
$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.run

## run: serve gateway.yaml on the embedded store; prints a demo key and a curl line
run: $(VENV)/.run
	$(BIN)/gateway serve --config gateway.yaml

## test: lint, type-check, and run the tests against a real redis-server on loopback
test: $(VENV)/.test
	$(BIN)/ruff check gateway plugins tests bench
	$(BIN)/ruff format --check gateway plugins tests bench
	$(BIN)/mypy gateway plugins/gateway_plugins
	tests/with-redis.sh $(BIN)/python -m pytest $(PYTEST_ARGS)

## bench: direct vs through-the-gateway throughput and latency (not a test; not in CI)
bench: $(VENV)/.test
	tests/with-redis.sh $(BIN)/python -m bench $(BENCH_ARGS)

## soak: mixed load with faults for SOAK_DURATION seconds (300); fails on a leak or a lost charge
SOAK_DURATION ?= 300
soak: $(VENV)/.test
	tests/with-redis.sh $(BIN)/python -m bench.soak --duration $(SOAK_DURATION)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
