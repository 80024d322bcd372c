"""gateway/__init__.py imports redis-py with OpenTelemetry's metrics marked missing: the
saving it is there for, redis-py's fallback it relies on, and that nothing else changes.

Each check runs in a fresh interpreter, since the test process has imported redis long
before."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent

needs_otel = pytest.mark.skipif(
    importlib.util.find_spec("opentelemetry.sdk") is None,
    reason="the OpenTelemetry SDK is not installed",
)


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@needs_otel
def test_redis_alone_still_imports_opentelemetry_metrics() -> None:
    # When this fails, redis-py no longer imports them: the workaround in
    # gateway/__init__.py can go.
    out = run(
        "import sys, redis.asyncio;"
        "print('opentelemetry.metrics' in sys.modules, 'opentelemetry.sdk.metrics' in sys.modules)"
    )
    assert out == "True True"


@needs_otel
def test_the_gateway_imports_redis_without_opentelemetry() -> None:
    out = run(
        "import sys, gateway.store, gateway.metering.webhook;"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    assert out == "[]"


@needs_otel
def test_redis_takes_its_own_no_opentelemetry_branch() -> None:
    # The names redis-py's fallback sets; when they change, check the workaround again.
    out = run(
        "import gateway, redis.observability.providers as p, redis.observability.metrics as m;"
        "print(p.OTEL_AVAILABLE, p.MeterProvider, m.OTEL_AVAILABLE, m.Meter)"
    )
    assert out == "False None False None"


@needs_otel
def test_opentelemetry_imports_as_usual_afterwards() -> None:
    out = run(
        "import gateway, sys;"
        "from opentelemetry.sdk.metrics import MeterProvider;"
        "from opentelemetry.metrics import Meter;"
        "from opentelemetry.sdk.trace import TracerProvider;"
        "print(MeterProvider.__name__, Meter.__name__, TracerProvider.__name__)"
    )
    assert out == "MeterProvider Meter TracerProvider"


def test_nothing_is_left_marked_missing() -> None:
    out = run(
        "import gateway, sys;"
        "print([n for n, m in sys.modules.items() if m is None and n.startswith('opentelemetry')])"
    )
    assert out == "[]"


def test_an_earlier_import_of_redis_is_left_alone() -> None:
    out = run("import sys, redis.asyncio, gateway; print('redis.asyncio' in sys.modules)")
    assert out == "True"
