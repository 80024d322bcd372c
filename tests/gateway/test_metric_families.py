"""``gateway.metric_families``: the per-request families are exposed exactly as
``prometheus_client``'s own ``Counter``, ``Histogram`` and ``Gauge`` would be after the
same calls, in both exposition formats."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

from gateway import metric_families as families
from gateway import metrics

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
LABELS = ("route", "dialect")
SERIES = [("a", "chat"), ("b", "chat"), ("a", "responses")]


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_created`` is the time a series was first used: the same for both sides."""
    monkeypatch.setattr("time.time", lambda: 1_700_000_000.25)


def expositions(registry: CollectorRegistry) -> tuple[bytes, bytes]:
    return generate_latest(registry), openmetrics(registry)


def test_counters_are_exposed_as_prometheus_client_exposes_them() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    local = families.LocalCounter("t_requests", "Requests.", LABELS, registry=ours)
    shared = families.SharedCounter("t_shared", "Shared.", LABELS, registry=ours)
    reference = Counter("t_requests", "Requests.", LABELS, registry=theirs)
    shared_reference = Counter("t_shared", "Shared.", LABELS, registry=theirs)
    calls: list[tuple[tuple[str, str], float]] = [
        (SERIES[0], 1),
        (SERIES[1], 3),
        (SERIES[0], 0),
        (SERIES[2], 2.5),
        (SERIES[0], 10**12),
    ]
    for values, amount in calls:
        local.inc(values, amount)
        shared.inc(values, amount)
        reference.labels(*values).inc(amount)
        shared_reference.labels(*values).inc(amount)
    assert expositions(ours) == expositions(theirs)
    created = b't_requests_created{dialect="chat",route="a"} 1.70000000025e+09'
    assert created in generate_latest(ours)


def test_a_negative_amount_is_refused_and_still_makes_the_series() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    local = families.LocalCounter("t_refused", "Refused.", ("route",), registry=ours)
    reference = Counter("t_refused", "Refused.", ("route",), registry=theirs)
    with pytest.raises(ValueError):
        local.inc(("a",), -1)
    with pytest.raises(ValueError):
        reference.labels("a").inc(-1)
    assert expositions(ours) == expositions(theirs)


AMOUNTS = [0.0, 0.005, 0.0051, 1e-9, 0.3, 1.0, 1.5, 300.0, math.inf, -2.0, math.nan, 0.1, 0.2]


def test_histograms_are_exposed_as_prometheus_client_exposes_them() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    local = families.LocalHistogram("t_seconds", "Seconds.", LABELS, BUCKETS, registry=ours)
    shared = families.SharedHistogram("t_shared_seconds", "S.", LABELS, BUCKETS, registry=ours)
    reference = Histogram("t_seconds", "Seconds.", LABELS, buckets=BUCKETS, registry=theirs)
    shared_ref = Histogram("t_shared_seconds", "S.", LABELS, buckets=BUCKETS, registry=theirs)
    for n, amount in enumerate(AMOUNTS):
        values = SERIES[n % 2]  # the NaN and the infinity make one series' sum NaN
        local.observe(values, amount)
        shared.observe(values, amount)
        reference.labels(*values).observe(amount)
        shared_ref.labels(*values).observe(amount)
    assert expositions(ours) == expositions(theirs)


@given(st.lists(st.floats(allow_nan=False, min_value=0.0), max_size=40))
def test_a_histogram_sum_is_the_same_float_additions(amounts: list[float]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    local = families.LocalHistogram("t_sum", "Sum.", (), BUCKETS, registry=ours)
    reference = Histogram("t_sum", "Sum.", buckets=BUCKETS, registry=theirs)
    for amount in amounts:
        local.observe((), amount)
        reference.observe(amount)
    assert expositions(ours) == expositions(theirs)


def test_the_gauge_is_exposed_as_prometheus_client_exposes_it() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    local = families.LocalGauge("t_open", "Open.", registry=ours)
    reference = Gauge("t_open", "Open.", registry=theirs)
    assert expositions(ours) == expositions(theirs)
    for step in (local.inc, reference.inc, local.inc, reference.inc, local.dec, reference.dec):
        step()
    assert expositions(ours) == expositions(theirs)
    assert b"t_open 1.0" in generate_latest(ours)


def test_a_name_taken_twice_in_one_registry_is_refused_as_prometheus_client_refuses() -> None:
    registry = CollectorRegistry(auto_describe=True)
    families.LocalHistogram("t_twice", "Twice.", (), BUCKETS, registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        Counter("t_twice_count", "Clash.", registry=registry)


def test_unsorted_buckets_are_refused() -> None:
    with pytest.raises(ValueError, match="sorted"):
        families.LocalHistogram("t_unsorted", "U.", (), (1.0, 0.5), registry=None)


def test_a_few_requests_show_what_prometheus_client_would_show() -> None:
    """The gateway's own families after a few requests, against prometheus_client's
    objects fed the same figures (the families' definitions taken from the module)."""
    theirs = CollectorRegistry()
    reference = {
        "requests": Counter("gateway_requests", "R.", metrics.REQUESTS.labelnames, registry=theirs),
        "duration": Histogram(
            "gateway_request_duration_seconds",
            "D.",
            metrics.REQUEST_DURATION.labelnames,
            buckets=metrics._SECONDS,
            registry=theirs,
        ),
        "overhead": Histogram(
            "gateway_overhead_seconds",
            "O.",
            metrics.OVERHEAD.labelnames,
            buckets=metrics._OVERHEAD,
            registry=theirs,
        ),
        "ttft": Histogram(
            "gateway_time_to_first_token_seconds",
            "T.",
            metrics.TIME_TO_FIRST_TOKEN.labelnames,
            buckets=metrics._SECONDS,
            registry=theirs,
        ),
    }
    ours = CollectorRegistry()
    local = {
        "requests": families.LocalCounter(
            "gateway_requests", "R.", metrics.REQUESTS.labelnames, registry=ours
        ),
        "duration": families.LocalHistogram(
            "gateway_request_duration_seconds",
            "D.",
            metrics.REQUEST_DURATION.labelnames,
            metrics._SECONDS,
            registry=ours,
        ),
        "overhead": families.LocalHistogram(
            "gateway_overhead_seconds",
            "O.",
            metrics.OVERHEAD.labelnames,
            metrics._OVERHEAD,
            registry=ours,
        ),
        "ttft": families.LocalHistogram(
            "gateway_time_to_first_token_seconds",
            "T.",
            metrics.TIME_TO_FIRST_TOKEN.labelnames,
            metrics._SECONDS,
            registry=ours,
        ),
    }
    requests = [
        ("fast", "echo", "chat_completions", 200, 0.0123, 0.0004, 0.011),
        ("fast", "echo", "chat_completions", 200, 0.0301, 0.0002, 0.021),
        ("slow", "up", "responses", 502, 2.5, 0.003, None),
        ("fast", "echo", "chat_completions", 429, 0.0009, 0.0009, None),
    ]
    for route, backend, dialect, status, total, own, ttft in requests:
        local["requests"].inc((route, backend, dialect, str(status)))  # type: ignore[attr-defined]
        reference["requests"].labels(route, backend, dialect, str(status)).inc()
        for name, values, amount in (
            ("duration", (route, dialect), total),
            ("overhead", (dialect,), own),
            ("ttft", (route, backend), ttft),
        ):
            if amount is not None:
                local[name].observe(values, amount)  # type: ignore[attr-defined]
                reference[name].labels(*values).observe(amount)  # type: ignore[attr-defined]
    assert expositions(ours) == expositions(theirs)


def test_the_gateway_keeps_its_per_request_families_in_this_process() -> None:
    """Single-process mode (the tests'): the families are the local ones, registered in
    prometheus_client's default registry, so a scrape (or get_sample_value) sees them."""
    assert not families.SHARED
    assert isinstance(metrics.REQUESTS, families.LocalCounter)
    assert isinstance(metrics.REQUEST_DURATION, families.LocalHistogram)
    assert isinstance(metrics.OPEN_STREAMS, families.LocalGauge)
