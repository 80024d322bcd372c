"""The metrics recorded on every request, kept as plain Python numbers until a scrape.

``prometheus_client``'s own metrics take a lock for every value they change, and a
histogram walks its buckets in Python on every observation: for the dozen figures a
request records, that was about 2% of the gateway's instructions per request. The
families here keep the same figures in dictionaries (label values -> numbers) that
only the event loop's thread changes, and hand them to ``prometheus_client`` as a
custom collector when the registry is collected (a scrape, or ``get_sample_value``).
What a scrape shows is exactly what ``prometheus_client``'s ``Counter``,
``Histogram`` and ``Gauge`` would show after the same calls: the same families, help,
series in the order their labels were first used, values (the same float additions,
in the same order), ``_created`` timestamps (taken when a series is first used;
``PROMETHEUS_DISABLE_CREATED_SERIES`` at import is obeyed as there, but not a later
``disable_created_metrics()``), and bucket bounds. Only the event loop's thread may
record (every caller does). ``tests/gateway/test_metric_families.py`` pins that against
the library's own objects.

With ``PROMETHEUS_MULTIPROC_DIR`` set when this module is imported (several workers),
each figure must be in the files the scrape sums over the workers, at once: there the
families are ``prometheus_client``'s own metrics (``Shared...``), each labelled child
looked up once and kept.

``counter``, ``histogram`` and ``open_streams_gauge`` make the family for the mode
the process runs in. Label values are passed as a tuple of strings, in the order of
the label names.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import INF, floatToGoString

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# As prometheus_client decides, once, when it is imported.
SHARED = bool(os.environ.get(MULTIPROC_ENV))
_CREATED = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() not in (
    "true",
    "1",
    "t",
)

Labels = tuple[str, ...]


class Counting(Protocol):
    """A counter by label values."""

    name: str
    labelnames: Labels

    def inc(self, values: Labels, amount: float = 1) -> None: ...


class Observing(Protocol):
    """A histogram by label values."""

    name: str
    labelnames: Labels

    def observe(self, values: Labels, amount: float) -> None: ...


class Family:
    """What a metric is called and labelled by (read by tests of the dashboards)."""

    kind = ""

    def __init__(self, name: str, documentation: str, labelnames: Labels) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames


class LocalCounter(Family):
    """A counter kept in this process's memory; collected as ``Counter`` would be."""

    kind = "counter"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Labels,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        super().__init__(name, documentation, labelnames)
        self._series: dict[Labels, list[float]] = {}  # label values -> [value, created]
        if not labelnames:  # its one series exists from the start, as there
            self._series[()] = [0.0, time.time()]
        if registry is not None:
            registry.register(self)

    def inc(self, values: Labels, amount: float = 1) -> None:
        series = self._series.get(values)
        if series is None:  # made before the check, as ``labels()`` would make it
            series = self._series[values] = [0.0, time.time()]
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        series[0] += amount

    def series(self, values: Labels) -> list[float]:
        """The series of these label values, made as ``inc`` makes it: ``[value, created]``,
        for a caller that keeps it and adds to its value (a non-negative amount)."""
        series = self._series.get(values)
        if series is None:
            series = self._series[values] = [0.0, time.time()]
        return series

    def describe(self) -> Iterable[Metric]:
        return [CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, (value, created) in list(self._series.items()):
            family.add_metric(values, value, created if _CREATED else None)
        return [family]


class _Buckets:
    """One histogram series: observations per bucket (not cumulative), their sum, and the
    buckets' upper bounds (the histogram's)."""

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        """Add ``amount`` to the sum and to the first bucket whose bound is at least the
        amount (found by bisection; ``prometheus_client`` walks the bounds), none for a
        NaN, as there."""
        self.sum += amount
        if amount <= INF:  # not a NaN, which falls in no bucket
            self.counts[bisect_left(self.bounds, amount)] += 1


class LocalHistogram(Family):
    """A histogram kept in this process's memory; collected as ``Histogram`` would be.

    An observation adds to its sum and to the first bucket whose bound is at least
    the amount (found by bisection; ``prometheus_client`` walks the bounds), none for
    a NaN, as there."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Labels,
        buckets: Sequence[float],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        super().__init__(name, documentation, labelnames)
        bounds = [float(bound) for bound in buckets]
        if bounds != sorted(bounds) or not bounds:
            raise ValueError("Buckets not in sorted order")
        if bounds[-1] != INF:
            bounds.append(INF)
        self._bounds = tuple(bounds)
        self._le = tuple(floatToGoString(bound) for bound in bounds)  # type: ignore[no-untyped-call]
        self._series: dict[Labels, _Buckets] = {}
        if not labelnames:  # its one series exists from the start, as there
            self._series[()] = _Buckets(self._bounds)
        if registry is not None:
            registry.register(self)

    def observe(self, values: Labels, amount: float) -> None:
        self.series(values).observe(amount)

    def series(self, values: Labels) -> _Buckets:
        """The series of these label values (made at its first use), for a caller that
        keeps it and observes through it."""
        series = self._series.get(values)
        if series is None:
            series = self._series[values] = _Buckets(self._bounds)
        return series

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, series in list(self._series.items()):
            buckets: list[tuple[str, float]] = []
            acc = 0.0
            for le, count in zip(self._le, series.counts, strict=True):
                acc += count
                buckets.append((le, acc))
            family.add_metric(values, buckets, series.sum)
            if _CREATED:
                labels = dict(zip(self.labelnames, values, strict=True))
                family.add_sample(f"{self.name}_created", labels, series.created)
        return [family]


class LocalGauge(Family):
    """A gauge without labels kept in this process's memory; collected as ``Gauge``."""

    kind = "gauge"

    def __init__(
        self, name: str, documentation: str, registry: CollectorRegistry | None = REGISTRY
    ) -> None:
        super().__init__(name, documentation, ())
        self._value = 0.0
        if registry is not None:
            registry.register(self)

    def inc(self, amount: float = 1) -> None:
        self._value += amount

    def dec(self, amount: float = 1) -> None:
        self._value += -amount

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.name, self.documentation, value=self._value)]


class SharedCounter(Family):
    """A ``Counter`` (multiprocess mode), its labelled children kept by label values."""

    kind = "counter"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Labels,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        super().__init__(name, documentation, labelnames)
        self._metric = Counter(name, documentation, labelnames, registry=registry)
        self._children: dict[Labels, Counter] = {}

    def inc(self, values: Labels, amount: float = 1) -> None:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        child.inc(amount)


class SharedHistogram(Family):
    """A ``Histogram`` (multiprocess mode), its labelled children kept by label values."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Labels,
        buckets: Sequence[float],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        super().__init__(name, documentation, labelnames)
        self._metric = Histogram(
            name, documentation, labelnames, buckets=buckets, registry=registry
        )
        self._children: dict[Labels, Histogram] = {}

    def observe(self, values: Labels, amount: float) -> None:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        child.observe(amount)


def counter(name: str, documentation: str, labelnames: Labels) -> Counting:
    if SHARED:
        return SharedCounter(name, documentation, labelnames)
    return LocalCounter(name, documentation, labelnames)


def histogram(
    name: str, documentation: str, labelnames: Labels, buckets: Sequence[float]
) -> Observing:
    if SHARED:
        return SharedHistogram(name, documentation, labelnames, buckets)
    return LocalHistogram(name, documentation, labelnames, buckets)


def open_streams_gauge(name: str, documentation: str) -> Gauge | LocalGauge:
    """A gauge without labels; in multiprocess mode, summed over the live workers."""
    if SHARED:
        return Gauge(name, documentation, multiprocess_mode="livesum")
    return LocalGauge(name, documentation)
