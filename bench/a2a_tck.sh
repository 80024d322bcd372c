#!/usr/bin/env bash
# Run the A2A conformance kit (a2aproject/a2a-tck) against a gateway started from this
# checkout. A manual tool (the kit is on no registry, so CI cannot fetch it): neither
# pytest nor `make test` runs it. docs/a2a.md, "Conformance", has the last result.
#
#   bench/a2a_tck.sh TCK_CHECKOUT [CATEGORY ...]      (default: mandatory capabilities)
#
# TCK_CHECKOUT is a clone of the kit; its Python dependencies must be installed in
# $TCK_PYTHON (default: TCK_CHECKOUT/.venv/bin/python), e.g.
#   python3 -m venv /tmp/tck-venv && /tmp/tck-venv/bin/pip install -e TCK_CHECKOUT
#   TCK_PYTHON=/tmp/tck-venv/bin/python bench/a2a_tck.sh TCK_CHECKOUT
#
# What it starts, and stops at the end: a redis-server on a free loopback port, and
# `gateway serve` with one route, `echo` (the echo backend, its card also at the
# origin's /.well-known/agent-card.json, where the kit looks), and a key for it.
# ECHO_CHUNK_DELAY (seconds between the echo's words, default 0.3) makes each task
# run long enough to be seen WORKING. GATEWAY_TCK_EXTRA is appended to the route's
# settings (YAML, indented by 4), to try a route setting. The kit's reports stay in
# TCK_CHECKOUT/reports; the gateway's log is printed on failure to start.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
tck=${1:?usage: bench/a2a_tck.sh TCK_CHECKOUT [CATEGORY ...]}
tck=$(cd "$tck" && pwd)
shift
categories=("$@")
[ ${#categories[@]} -gt 0 ] || categories=(mandatory capabilities)
python=${TCK_PYTHON:-$tck/.venv/bin/python}
gateway=$here/.venv/bin/gateway

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
redis_port=$(free_port)
port=$(free_port)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
  --dir "$work" --daemonize no --loglevel warning >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done

cat >"$work/gateway.yaml" <<EOF
listen: {host: 127.0.0.1, port: $port}
redis: {url: "redis://127.0.0.1:$redis_port/0"}
backends:
  echo: {type: echo, chunk_delay: ${ECHO_CHUNK_DELAY:-0.3}}
routes:
  echo:
    backend: echo
    pricing: {input: 1.0, output: 2.0}
    a2a:
      well_known: true
      description: The echo agent, for the A2A TCK.
${GATEWAY_TCK_EXTRA:+    $GATEWAY_TCK_EXTRA}
EOF

key=$("$gateway" --config "$work/gateway.yaml" --json keys create --name tck --balance 1000000000 |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')
"$gateway" --config "$work/gateway.yaml" serve --log-format json >"$work/gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$work/gateway.log" >&2; exit 1; }

status=0
for category in "${categories[@]}"; do
  echo "=== $category (gateway $(git -C "$here" rev-parse --short HEAD), kit $(git -C "$tck" rev-parse --short HEAD))"
  (cd "$tck" && A2A_AUTH_TYPE=bearer A2A_AUTH_TOKEN=$key \
    "$python" run_tck.py --sut-url "http://localhost:$port/a2a/echo" --category "$category") || status=$?
done
exit $status
