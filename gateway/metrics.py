"""Prometheus metrics: every metric the gateway exports, defined here and only here.

Served at ``/metrics`` through ``prometheus-client``. With several worker
processes, ``PROMETHEUS_MULTIPROC_DIR`` must name an empty folder and be set
in each worker's environment **before** this module (or ``prometheus_client``)
is imported: each process then writes its values to files there, and the
scrape, whichever worker answers it, sums them (``MultiProcessCollector``).
A supervisor calls ``mark_process_dead(pid)`` for a worker that exited, so that
its share of ``gateway_open_streams`` disappears.

Per request, the middleware (``gateway.server.middlewares.observe``) opens an
``Observation`` in a context variable; the pipeline fills in the route and
backend, the time spent waiting on the upstream (around each ``anext`` of the
backend's stream) and the time of the first token; the middleware records it
once the response is sent. Nothing else is measured per chunk.

What every request records (its count, durations, tokens and credits, and the
streams in flight) is kept by ``gateway.metric_families``: plain Python numbers
handed to ``prometheus_client`` when it collects, in one process; its own metrics
in multiprocess mode. The rest are ``prometheus_client``'s metrics as they are.
"""

from __future__ import annotations

import contextvars
import os
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, multiprocess
from prometheus_client.exposition import choose_encoder

from gateway.errors import GatewayError
from gateway.events import Usage
from gateway.metric_families import (
    MULTIPROC_ENV,
    LocalCounter,
    LocalHistogram,
    counter,
    histogram,
    open_streams_gauge,
)

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

REQUESTS = counter(
    "gateway_requests",
    "Requests to the agent endpoints, by route (agent id), backend, dialect and HTTP status.",
    ("route", "backend", "dialect", "status"),
)
REQUEST_DURATION = histogram(
    "gateway_request_duration_seconds",
    "Total time of a request, from its arrival to the last byte of its answer.",
    ("route", "dialect"),
    _SECONDS,
)
TIME_TO_FIRST_TOKEN = histogram(
    "gateway_time_to_first_token_seconds",
    "Time from a request's arrival to the first content (or terminal) event of its answer.",
    ("route", "backend"),
    _SECONDS,
)
OVERHEAD = histogram(
    "gateway_overhead_seconds",
    "The gateway's own time per request: total time minus time waiting on the upstream.",
    ("dialect",),
    _OVERHEAD,
)
TOKENS = counter(
    "gateway_tokens",
    "Tokens charged, by route and kind (input counts cached_input and cache_write too; "
    "output counts reasoning too).",
    ("route", "kind"),
)
CREDITS = counter(
    "gateway_credits",
    "Credits charged (1,000,000 credits = 1 USD), by route.",
    ("route",),
)
UNBILLED = counter(
    "gateway_unbilled_credits",
    "Credits of reported usage beyond what the request held, so not charged (an upstream "
    "reporting more than it was allowed), by route.",
    ("route",),
)
THRESHOLD_EVENTS = Counter(
    "gateway_threshold_events",
    "Threshold events this process fired (a key's or team's spend crossing a fraction of "
    "its balance or budget; gateway/store/alerts.py), by whose, kind and fraction.",
    ["whose", "kind", "fraction"],
)
ALERT_DELIVERY_FAILURES = Counter(
    "gateway_alert_webhook_failures",
    "Threshold events the alert webhook never took, after every retry.",
)
UPSTREAM_ERRORS = counter(
    "gateway_upstream_errors",
    "Failures of a backend's call (before or during its answer), by backend and error code.",
    ("backend", "kind"),
)
FALLBACKS = Counter(
    "gateway_fallbacks",
    "Requests handed to the route's next backend because this one failed before answering.",
    ["route", "from_backend"],
)
OPEN_STREAMS = open_streams_gauge(
    "gateway_open_streams",
    "Calls to backends in flight: each an event stream, whether or not the client streams.",
)
CONFIG_RELOADS = Counter(
    "gateway_config_reloads",
    "Reloads of gateway.yaml, by outcome: applied, or rejected (invalid, nothing changed).",
    ["outcome"],
)
REDIS_ERRORS = Counter(
    "gateway_redis_errors",
    "Failed calls to the store (Redis), by error class.",
    ["error"],
)
CLIENT_FAULTS = counter(
    "gateway_client_faults",
    "Requests aiohttp refused or cut short for a client's fault before or after the "
    "application (gateway.server.connection): line_too_long, bad_header, bad_request_line, "
    "bad_request, bad_body, aborted.",
    ("fault",),
)

_KINDS = ("input", "output", "cached_input", "cache_write", "reasoning")


@dataclass(slots=True)
class Observation:
    """What one request's metrics need, filled in as it runs (see the module's doc)."""

    dialect: str
    started: float = field(default_factory=time.perf_counter)
    route: str = ""  # set once the route is known (never a client's unknown model name)
    backend: str = ""  # the last backend tried
    waited: float = 0.0  # seconds spent waiting on the upstream's events
    first_token: float | None = None  # perf_counter() at the first answering event


_CURRENT: contextvars.ContextVar[Observation | None] = contextvars.ContextVar(
    "gateway_observation", default=None
)


def observation() -> Observation:
    """The current request's observation; a throwaway one outside a request."""
    return _CURRENT.get() or Observation("")


def begin(dialect: str) -> Observation:
    obs = Observation(dialect)
    _CURRENT.set(obs)
    return obs


def finish(obs: Observation, status: int) -> None:
    """Record a request once its answer is sent (or failed with ``status``)."""
    total = time.perf_counter() - obs.started
    route, backend, dialect = obs.route, obs.backend, obs.dialect
    if _LOCAL is not None:
        series = _FINISHED.get((route, backend, dialect, status))
        if series is None:
            series = _finished(_LOCAL, route, backend, dialect, status)
        requests, duration, overhead, first = series
        requests[0] += 1
        duration.observe(total)
        overhead.observe(max(0.0, total - obs.waited))
        if obs.first_token is not None:
            if first is None:
                first = series[3] = _LOCAL[3].series((route, backend))
            first.observe(obs.first_token - obs.started)
        return
    REQUESTS.inc((route, backend, dialect, str(status)))
    REQUEST_DURATION.observe((route, dialect), total)
    OVERHEAD.observe((dialect,), max(0.0, total - obs.waited))
    if obs.first_token is not None:
        TIME_TO_FIRST_TOKEN.observe((route, backend), obs.first_token - obs.started)


# ``finish``'s families, when they are this process's own (not multiprocess mode): their
# series of one request's labels are looked up once (``_finished``), then added to.
_LocalFamilies = tuple[LocalCounter, LocalHistogram, LocalHistogram, LocalHistogram]
_LOCAL: _LocalFamilies | None = None
if (
    isinstance(REQUESTS, LocalCounter)
    and isinstance(REQUEST_DURATION, LocalHistogram)
    and isinstance(OVERHEAD, LocalHistogram)
    and isinstance(TIME_TO_FIRST_TOKEN, LocalHistogram)
):
    _LOCAL = (REQUESTS, REQUEST_DURATION, OVERHEAD, TIME_TO_FIRST_TOKEN)
# (route, backend, dialect, status) -> the series ``finish`` adds to: the requests', the
# durations', the overheads' and (once a request of these labels had one) the first
# tokens'. As many as the families' series: the configuration's routes, the statuses.
_Finished = list[Any]  # [list[float], _Buckets, _Buckets, _Buckets | None]
_FINISHED: dict[tuple[str, str, str, int], _Finished] = {}


def _finished(
    families: _LocalFamilies, route: str, backend: str, dialect: str, status: int
) -> _Finished:
    """The series of a request with these labels, made in the order ``finish``'s calls
    to the families would make them (the first token's at its first use)."""
    requests, duration, overhead, _ = families
    series: _Finished = [
        requests.series((route, backend, dialect, str(status))),
        duration.series((route, dialect)),
        overhead.series((dialect,)),
        None,
    ]
    _FINISHED[(route, backend, dialect, status)] = series
    return series


def settled(route: str, usage: Usage, credits: int, unbilled: int = 0) -> None:
    """Count what one request was charged, and what it cost beyond its hold (not charged)."""
    counts = (
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
    )
    if _SETTLING is None:
        for kind, count in zip(_KINDS, counts, strict=True):
            if count:
                TOKENS.inc((route, kind), count)
        CREDITS.inc((route,), credits)
    else:  # the same, through the route's series, kept (``_SETTLED``)
        kept = _SETTLED.get(route)
        if kept is None:
            kept = _SETTLED[route] = [None] * (len(_KINDS) + 1)
        for at, count in enumerate(counts):
            if count:
                series = kept[at]
                if series is None or count < 0:  # made at its first use; refused below 0
                    TOKENS.inc((route, _KINDS[at]), count)
                    kept[at] = _SETTLING[0].series((route, _KINDS[at]))
                else:
                    series[0] += count
        series = kept[-1]
        if series is None or credits < 0:
            CREDITS.inc((route,), credits)
            kept[-1] = _SETTLING[1].series((route,))
        else:
            series[0] += credits
    if unbilled:
        UNBILLED.inc((route,), unbilled)


# ``settled``'s families when they are this process's own, and each route's series of
# them, kept: a token kind's (made at its first count, as ``inc`` makes it), then the
# credits'.
_SETTLING: tuple[LocalCounter, LocalCounter] | None = None
if isinstance(TOKENS, LocalCounter) and isinstance(CREDITS, LocalCounter):
    _SETTLING = (TOKENS, CREDITS)
_SETTLED: dict[str, list[list[float] | None]] = {}


def upstream_error(backend: str, error: GatewayError) -> None:
    UPSTREAM_ERRORS.inc((backend, error.code or error.type))


def client_fault(kind: str) -> None:
    CLIENT_FAULTS.inc((kind,))


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def mark_process_dead(pid: int) -> None:
    """For a supervisor: forget the live gauges of a worker that exited."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The scrape's body and content type (OpenMetrics if ``accept`` asks for it)."""
    encoder, content_type = choose_encoder(accept or "")
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return encoder(registry), content_type
    return encoder(REGISTRY), content_type
