# Set-up and checks. `make run` tries the gateway; `make test` runs every check CI runs.
# Both install from the locks in requirements/ (every dependency pinned, with hashes), so
# the result does not change when a package is released upstream; `make lock` refreshes them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Hash-checked installs of exactly the lock; pip's own cache and index settings still apply.
PIP_LOCKED := $(BIN)/python -m pip install --quiet --require-hashes --no-deps --only-binary :all:
# The project itself, built with the locked hatchling (an isolated build would pull the newest).
PIP_PROJECT := $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .

.PHONY: run test test-matrix lock bench bench-peers bench-capacity soak clean

# Node.js and npm from Debian when missing and we are root (the client matrix's Node
# clients, tests/matrix/node, and the Portkey peer need them); true when npm is there.
ENSURE_NPM := command -v npm >/dev/null 2>&1 || { [ "$$(id -u)" = "0" ] && \
	command -v apt-get >/dev/null 2>&1 && \
	echo "npm not found: installing Debian's nodejs and npm packages" >&2 && \
	apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive \
	apt-get install -y -qq --no-install-recommends nodejs npm >&2; }

# Debian's Chromium when missing and we are root: the console's browser tests
# (tests/gateway/server/console/test_browser.py) drive it through Playwright, which is
# never asked to download a browser of its own. True when it is there.
ENSURE_CHROMIUM := test -x /usr/bin/chromium || { [ "$$(id -u)" = "0" ] && \
	command -v apt-get >/dev/null 2>&1 && \
	echo "chromium not found: installing Debian's chromium package" >&2 && \
	apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive \
	apt-get install -y -qq --no-install-recommends chromium >&2; }

$(BIN)/python: requirements/build.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP_LOCKED) -r requirements/build.txt
	touch $@

# The project with the embedded store, for `make run`.
$(VENV)/.run: requirements/run.txt pyproject.toml | $(BIN)/python
	$(PIP_LOCKED) -r requirements/run.txt
	$(PIP_PROJECT)
	touch $@

# The project with its test tools (a superset of the run lock).
$(VENV)/.test: requirements/test.txt pyproject.toml | $(BIN)/python
	$(PIP_LOCKED) -r requirements/test.txt
	$(PIP_PROJECT)
	touch $@ $(VENV)/.run

## run: serve gateway.yaml on the embedded store; prints a demo key and a curl line
run: $(VENV)/.run
	$(BIN)/gateway serve --config gateway.yaml

## test: lint, type-check, and run the tests against a real redis-server on loopback
test: $(VENV)/.test
	@$(ENSURE_NPM) || echo "npm not found: the matrix's Node clients will be skipped" >&2
	@$(ENSURE_CHROMIUM) || echo "chromium not found: the console's browser tests will be skipped" >&2
	$(BIN)/ruff check gateway plugins tests bench
	$(BIN)/ruff format --check gateway plugins tests bench
	$(BIN)/mypy gateway plugins/gateway_plugins
	tests/with-redis.sh $(BIN)/python -m pytest $(PYTEST_ARGS)

## test-matrix: the client matrix (tests/matrix) in full: every client over the echo backend
## (as in `make test`) and over the LiteLLM proxy, installed once into .bench-peers/ (minutes)
test-matrix: $(VENV)/.test
	@$(ENSURE_NPM) || echo "npm not found: the matrix's Node clients will be skipped" >&2
	GATEWAY_MATRIX=full tests/with-redis.sh $(BIN)/python -m pytest tests/matrix $(PYTEST_ARGS)

## bench: direct vs through-the-gateway throughput and latency (not a test; not in CI)
bench: $(VENV)/.test
	tests/with-redis.sh $(BIN)/python -m bench $(BENCH_ARGS)

## bench-peers: `make bench` plus the LiteLLM proxy (PyPI) and the Portkey gateway (npm), installed
## once into .bench-peers/; a peer that cannot be installed or started is reported absent
bench-peers: $(VENV)/.test
	@$(ENSURE_NPM) || echo "could not install npm: Portkey will be absent" >&2
	tests/with-redis.sh $(BIN)/python -m bench --peers $(BENCH_ARGS)

## bench-capacity: 10,000 open slow streams on one worker, then RSS over 1,000,000 requests
bench-capacity: $(VENV)/.test
	tests/with-redis.sh $(BIN)/python -m bench.capacity $(BENCH_ARGS)

## soak: mixed load with faults for SOAK_DURATION seconds (300); fails on a leak or a lost charge
SOAK_DURATION ?= 300
soak: $(VENV)/.test
	tests/with-redis.sh $(BIN)/python -m bench.soak --duration $(SOAK_DURATION)

## lock: re-resolve requirements/*.txt from pyproject.toml (newest releases in its ranges)
LOCK := $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock"
lock: | $(BIN)/python
	$(PIP_LOCKED) -r requirements/uv.txt
	$(LOCK) --upgrade requirements/build.in -o requirements/build.txt
	$(LOCK) --upgrade pyproject.toml -o requirements/base.txt
	$(LOCK) --upgrade pyproject.toml --extra embedded -o requirements/run.txt
	$(LOCK) --upgrade pyproject.toml --extra test -o requirements/test.txt
	$(LOCK) --upgrade requirements/litellm.in -o requirements/litellm.txt
	$(LOCK) --upgrade requirements/uv.in -o requirements/uv.txt

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
