# Set-up and checks. `make run` tries the gateway; `make test` runs every check CI runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench bench-peers bench-capacity soak clean

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

## bench-peers: `make bench` plus the LiteLLM proxy (PyPI) and the Portkey gateway (npm), installed
## once into .bench-peers/; a peer that cannot be installed or started is reported absent
bench-peers: $(VENV)/.test
	@command -v npm >/dev/null 2>&1 || [ "$$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1 || { \
	  echo "npm not found: installing Debian's nodejs and npm packages" >&2; \
	  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends nodejs npm >&2 || \
	  echo "could not install npm: Portkey will be absent" >&2; }
	tests/with-redis.sh $(BIN)/python -m bench --peers $(BENCH_ARGS)

## bench-capacity: 10,000 open slow streams on one worker, then RSS over 1,000,000 requests
bench-capacity: $(VENV)/.test
	tests/with-redis.sh $(BIN)/python -m bench.capacity $(BENCH_ARGS)

## soak: mixed load with faults for SOAK_DURATION seconds (300); fails on a leak or a lost charge
SOAK_DURATION ?= 300
soak: $(VENV)/.test
	tests/with-redis.sh $(BIN)/python -m bench.soak --duration $(SOAK_DURATION)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
