"""``gateway.metrics``: what one request records, and the hooks in the pipeline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway import metric_families as families
from gateway import metrics
from gateway.errors import RateLimited
from gateway.events import Batch, Completed, Failed, TextDelta, Usage
from gateway.settings import Timeouts
from gateway.stream_contract import checked
from tests.gateway.factories import collect, context, stream


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_outside_a_request_the_observation_is_a_throwaway() -> None:
    metrics._CURRENT.set(None)
    first = metrics.observation()
    first.route = "x"
    assert metrics.observation() is not first


def test_finish_records_count_duration_overhead_and_first_token() -> None:
    obs = metrics.begin("responses")
    assert metrics.observation() is obs
    obs.route, obs.backend = "mt-route", "mt-backend"
    obs.started -= 2.0  # two seconds ago
    obs.waited = 1.5
    obs.first_token = obs.started + 0.5
    overhead_sum = sample("gateway_overhead_seconds_sum", dialect="responses")
    metrics.finish(obs, 200)
    labels = {"route": "mt-route", "backend": "mt-backend", "dialect": "responses"}
    assert sample("gateway_requests_total", **labels, status="200") == 1
    duration = sample("gateway_request_duration_seconds_sum", route="mt-route", dialect="responses")
    assert 2.0 <= duration < 2.5
    own = sample("gateway_overhead_seconds_sum", dialect="responses") - overhead_sum
    assert 0.5 <= own < 1.0
    ttft = "gateway_time_to_first_token_seconds_sum"
    assert sample(ttft, route="mt-route", backend="mt-backend") == pytest.approx(0.5)


def test_a_request_without_a_first_token_has_no_ttft_sample() -> None:
    obs = metrics.begin("chat_completions")
    obs.route = "mt-refused"
    metrics.finish(obs, 402)
    ttft = "gateway_time_to_first_token_seconds_count"
    assert sample(ttft, route="mt-refused", backend="") == 0
    labels = {"route": "mt-refused", "backend": "", "dialect": "chat_completions"}
    assert sample("gateway_requests_total", **labels, status="402") == 1


def test_settled_counts_tokens_by_kind_and_credits() -> None:
    usage = Usage(100, 20, cached_input_tokens=30, cache_write_tokens=10, reasoning_tokens=5)
    metrics.settled("mt-settled", usage, 1234)
    metrics.settled("mt-settled", Usage(1, 1), 3)
    kinds = {"input": 101, "output": 21, "cached_input": 30, "cache_write": 10, "reasoning": 5}
    for kind, count in kinds.items():
        assert sample("gateway_tokens_total", route="mt-settled", kind=kind) == count
    assert sample("gateway_credits_total", route="mt-settled") == 1237


async def test_checked_accumulates_the_wait_on_the_upstream() -> None:
    async def slow() -> AsyncIterator[Batch]:
        for event in (TextDelta("a"), TextDelta("b"), Completed()):
            await asyncio.sleep(0.05)
            yield (event,)

    obs = metrics.begin("chat_completions")
    await collect(checked(slow(), context()))
    assert 0.15 <= obs.waited < 0.5


async def test_checked_counts_upstream_errors_by_kind() -> None:
    ctx = context()
    kind = {"backend": "echo"}
    before = {
        k: sample("gateway_upstream_errors_total", **kind, kind=k)
        for k in ("rate_limit_exceeded", "upstream_timeout", "upstream_error")
    }

    async def hangs() -> AsyncIterator[Batch]:
        await asyncio.sleep(10)
        yield (Completed(),)

    async def raises() -> AsyncIterator[Batch]:
        raise RuntimeError("boom")
        yield (Completed(),)

    await collect(checked(stream([Failed(RateLimited("busy"))]), ctx))
    await collect(checked(hangs(), ctx, Timeouts(first_byte=0.01)))
    await collect(checked(raises(), ctx))
    await collect(checked(stream([TextDelta("cut")]), ctx))  # no terminal event
    await collect(checked(stream([TextDelta("a"), Completed()]), ctx))  # fine: not counted
    after = {
        k: sample("gateway_upstream_errors_total", **kind, kind=k) - v for k, v in before.items()
    }
    assert after == {"rate_limit_exceeded": 1, "upstream_timeout": 1, "upstream_error": 2}


async def test_a_failure_is_counted_even_when_the_consumer_stops_at_it() -> None:
    before = sample("gateway_upstream_errors_total", backend="echo", kind="rate_limit_exceeded")
    held = checked(stream([Failed(RateLimited("busy")), Completed()]), context())
    (failed,) = await anext(held)
    assert isinstance(failed, Failed)
    await held.aclose()  # type: ignore[attr-defined]
    after = sample("gateway_upstream_errors_total", backend="echo", kind="rate_limit_exceeded")
    assert after - before == 1


def test_exposition_is_the_prometheus_text_format() -> None:
    body, content_type = metrics.exposition(None)
    assert content_type.startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"gateway_requests", "gateway_open_streams", "gateway_config_reloads"} <= names
    body, content_type = metrics.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_exposition_reads_the_multiprocess_folder_when_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    body, _ = metrics.exposition(None)  # an empty folder: nothing written by any worker yet
    assert "gateway_requests" not in body.decode()
    metrics.mark_process_dead(12345)  # no files of that pid: nothing to do, no error


def _request_families(registry: CollectorRegistry) -> metrics._LocalFamilies:
    return (
        families.LocalCounter("gateway_requests", "R.", metrics.REQUESTS.labelnames, registry),
        families.LocalHistogram(
            "gateway_request_duration_seconds", "D.", ("route", "dialect"), metrics._SECONDS,
            registry,
        ),
        families.LocalHistogram(
            "gateway_overhead_seconds", "O.", ("dialect",), metrics._OVERHEAD, registry
        ),
        families.LocalHistogram(
            "gateway_time_to_first_token_seconds", "T.", ("route", "backend"), metrics._SECONDS,
            registry,
        ),
    )  # fmt: skip


def test_finish_through_the_kept_series_records_what_the_families_calls_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    requests = [  # route, backend, dialect, status, started, waited, first token
        ("fast", "echo", "chat_completions", 200, 99.9877, 0.0120, 99.99),
        ("fast", "echo", "chat_completions", 200, 99.9699, 0.0298, 99.98),
        ("slow", "up", "responses", 502, 97.5, 2.497, None),
        ("fast", "echo", "chat_completions", 429, 99.9991, 0.0, None),
        ("slow", "up", "responses", 502, 99.0, 0.5, 99.5),
        ("fast", "echo", "chat_completions", 200, 99.0, 3.0, 99.1),  # overhead below 0: 0
    ]
    monkeypatch.setattr(metrics.time, "perf_counter", lambda: 100.0)

    def recorded(kept: bool) -> list[str]:
        registry = CollectorRegistry()
        local = _request_families(registry)
        names = ("REQUESTS", "REQUEST_DURATION", "OVERHEAD", "TIME_TO_FIRST_TOKEN")
        for name, family in zip(names, local, strict=True):
            monkeypatch.setattr(metrics, name, family)
        monkeypatch.setattr(metrics, "_LOCAL", local if kept else None)
        monkeypatch.setattr(metrics, "_FINISHED", {})
        for route, backend, dialect, status, started, waited, first in requests:
            obs = metrics.Observation(dialect, started, route, backend, waited, first)
            metrics.finish(obs, status)
        text = generate_latest(registry).decode()
        return [line for line in text.splitlines() if "_created" not in line]

    assert recorded(kept=True) == recorded(kept=False)
    assert 'gateway_requests_total{backend="echo",dialect="chat_completions",' in "".join(
        recorded(kept=True)
    )


def test_settled_through_the_kept_series_records_what_the_families_calls_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settlements = [  # route, usage, credits, unbilled
        ("a", Usage(100, 20, cached_input_tokens=30), 1234, 0),
        ("b", Usage(1, 0), 3, 2),
        ("a", Usage(5, 5, cache_write_tokens=1, reasoning_tokens=2), 7, 0),
        ("a", Usage(0, 0), 0, 0),
        ("c", Usage(0, 0), 0, 0),
        ("a", Usage(-1, 0), 1, 0),  # refused, as a counter refuses
    ]

    def recorded(kept: bool) -> list[str]:
        registry = CollectorRegistry()
        tokens = families.LocalCounter("gateway_tokens", "T.", ("route", "kind"), registry)
        credits = families.LocalCounter("gateway_credits", "C.", ("route",), registry)
        unbilled = families.LocalCounter("gateway_unbilled_credits", "U.", ("route",), registry)
        monkeypatch.setattr(metrics, "TOKENS", tokens)
        monkeypatch.setattr(metrics, "CREDITS", credits)
        monkeypatch.setattr(metrics, "UNBILLED", unbilled)
        monkeypatch.setattr(metrics, "_SETTLING", (tokens, credits) if kept else None)
        monkeypatch.setattr(metrics, "_SETTLED", {})
        for route, usage, charged, over in settlements:
            if usage.input_tokens < 0:
                with pytest.raises(ValueError, match="non-negative"):
                    metrics.settled(route, usage, charged, over)
            else:
                metrics.settled(route, usage, charged, over)
        text = generate_latest(registry).decode()
        return [line for line in text.splitlines() if "_created" not in line]

    assert recorded(kept=True) == recorded(kept=False)
    assert 'gateway_tokens_total{kind="cached_input",route="a"} 30.0' in recorded(kept=True)
