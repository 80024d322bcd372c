"""An authenticated, metered edge gateway for AI agent APIs."""

import importlib
import sys

__version__ = "0.1.0"

# redis-py (8.x) imports OpenTelemetry's metrics API and SDK when it is itself imported, if
# they are installed (`redis/observability/metrics.py` and `providers.py`: `try: from
# opentelemetry.metrics import Meter` / `from opentelemetry.sdk.metrics import
# MeterProvider`), for metrics of its own that only `redis.observability`'s `init` turns
# on. The gateway never turns them on, and the SDK is installed with the `otel` extra (for
# traces: gateway/server/tracing.py) and in the test environment. Those imports are about
# 60 modules and 2.4 MB of idle RSS per worker. So redis is first imported here with the
# two modules marked missing, which makes redis-py take its own "OpenTelemetry is not
# installed" branch (as on an install without the extra); the marks are removed right
# after, and tracing imports the SDK as usual. tests/gateway/test_redis_import.py pins
# both the saving and redis-py's fallback, and fails when redis-py changes either.
_REDIS_OPTIONAL = ("opentelemetry.metrics", "opentelemetry.sdk.metrics")


def _import_redis_without_its_metrics() -> None:
    """Import ``redis.asyncio`` with OpenTelemetry's metrics marked missing (see above);
    nothing happens when redis or one of the two modules is already imported."""
    if "redis" in sys.modules or any(name in sys.modules for name in _REDIS_OPTIONAL):
        return
    for name in _REDIS_OPTIONAL:
        sys.modules[name] = None  # type: ignore[assignment]  # None marks a module missing
    try:
        importlib.import_module("redis.asyncio")
    finally:
        for name in _REDIS_OPTIONAL:
            if sys.modules.get(name, "") is None:
                del sys.modules[name]


_import_redis_without_its_metrics()
