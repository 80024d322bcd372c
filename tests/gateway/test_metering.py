from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import pytest

from gateway import tokens
from gateway.errors import ServiceUnavailable, UpstreamError
from gateway.events import (
    Completed,
    Event,
    Failed,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    Usage,
)
from gateway.metering import SETTLE_ATTEMPTS, Meter, cost
from gateway.route import Route
from gateway.store import LedgerEntry, Store
from gateway.store.records import Charge
from gateway.tasks import BackgroundTasks
from tests.conftest import invocation
from tests.gateway.factories import close, collect, context, pricing, stream

PRICED = Route(backend="echo", pricing=pricing(input="0.15", output="0.6"))


# cost()


def test_cost_rounds_up_once_per_request() -> None:
    assert cost(Usage(input_tokens=3), pricing(input="0.15")) == 1  # ceil(0.45)
    # Rounded once over the sum, not once per kind of token: ceil(0.4 + 0.4), not 1 + 1.
    assert cost(Usage(1, 1), pricing(input="0.4", output="0.4")) == 1
    assert cost(Usage(10, 0), pricing(input="0.1")) == 1  # exact: no float 1.0000000000000002
    assert cost(Usage(0, 0), pricing(input="5", output="5")) == 0


def test_cost_is_exact_with_decimal_prices() -> None:
    # 0.1 * 30 == 3 exactly in decimal (binary floats give 3.0000000000000004 -> 4).
    assert cost(Usage(30, 0), pricing(input="0.1")) == 3
    assert cost(Usage(1_000_000, 1_000_000), pricing(input="2.5", output="10")) == 12_500_000
    assert cost(Usage(7, 0), pricing(input="0.000001")) == 1


def test_cached_tokens_use_the_cached_price() -> None:
    p = pricing(input="1", output="0", cached_input="0.25")
    # 100 input of which 40 cached: 60 * 1 + 40 * 0.25 = 70
    assert cost(Usage(input_tokens=100, cached_input_tokens=40), p) == 70


def test_cached_tokens_fall_back_to_the_input_price() -> None:
    p = pricing(input="1")
    assert cost(Usage(input_tokens=100, cached_input_tokens=40), p) == 100


def test_cache_write_price_and_fallback() -> None:
    usage = Usage(input_tokens=100, cached_input_tokens=10, cache_write_tokens=30)
    p = pricing(input="1", cached_input="0.1", cache_write="2")
    assert cost(usage, p) == 60 + 1 + 60
    assert cost(usage, pricing(input="1", cached_input="0.1")) == 60 + 1 + 30


def test_zero_cached_price_is_not_the_input_price() -> None:
    p = pricing(input="1", cached_input="0")
    assert cost(Usage(input_tokens=10, cached_input_tokens=10), p) == 0


def test_output_includes_reasoning_once() -> None:
    usage = Usage(input_tokens=0, output_tokens=10, reasoning_tokens=4)
    assert cost(usage, pricing(output="1")) == 10


# Meter.wrap on a fakeredis store


@pytest.fixture
async def tasks() -> BackgroundTasks:
    return BackgroundTasks()


async def new_key(store: Store, balance: int = 1_000) -> str:
    key, _ = await store.create_key("meter", balance=balance)
    return key.id


async def usage_entries(store: Store, key_id: str) -> list[LedgerEntry]:
    return [e for e in await store.ledger(key_id) if e.kind == "usage"]


async def test_settles_once_with_upstream_usage(fake_store: Store, tasks: BackgroundTasks) -> None:
    key_id = await new_key(fake_store)
    ctx = context(route=PRICED, key_id=key_id, request_id="req_1")
    upstream: list[Event] = [TextDelta("hi"), Usage(10, 20, cached_input_tokens=0), Completed()]
    out = await collect(Meter(fake_store, tasks).wrap(stream(upstream), ctx))
    assert out == upstream
    await tasks.drain()
    (entry,) = await usage_entries(fake_store, key_id)
    expected = cost(Usage(10, 20), PRICED.pricing)  # 1.5 + 12 = 13.5 -> 14
    assert expected == 14
    assert entry.amount == -expected
    assert entry.usage == Usage(10, 20)
    assert (entry.request_id, entry.agent, entry.backend) == ("req_1", "echo", "echo")
    assert await fake_store.balance(key_id) == 1_000 - expected


async def test_injects_an_estimate_before_completed(
    fake_store: Store, tasks: BackgroundTasks
) -> None:
    key_id = await new_key(fake_store)
    inv = invocation("x" * 40)
    ctx = context(inv, route=PRICED, key_id=key_id)
    upstream: list[Event] = [TextDelta("abcd"), TextDelta("efgh"), TextDelta("ij"), Completed()]
    out = await collect(Meter(fake_store, tasks).wrap(stream(upstream), ctx))
    assert out[:3] == upstream[:3] and out[-1] == Completed()
    usage = out[3]
    assert isinstance(usage, Usage) and usage.estimated
    assert usage.input_tokens == tokens.estimate_input(inv) > 0
    assert usage.output_tokens == 3  # max(3 deltas, ceil(10 chars / 4))
    await tasks.drain()
    (entry,) = await usage_entries(fake_store, key_id)
    assert entry.usage == usage
    assert entry.amount == -cost(usage, PRICED.pricing)


async def test_early_close_settles_an_estimate(fake_store: Store, tasks: BackgroundTasks) -> None:
    key_id = await new_key(fake_store)
    ctx = context(route=PRICED, key_id=key_id)
    upstream: list[Event] = [*(TextDelta("w ") for _ in range(50)), Usage(1, 50), Completed()]
    metered = Meter(fake_store, tasks).wrap(stream(upstream), ctx)
    k = 7
    for _ in range(k):
        assert isinstance(await anext(metered), TextDelta)
    await close(metered)  # the client went away
    await tasks.drain()
    (entry,) = await usage_entries(fake_store, key_id)
    assert entry.usage is not None and entry.usage.estimated
    assert entry.usage.output_tokens >= k
    assert entry.usage.input_tokens == tokens.estimate_input(ctx.invocation)
    assert entry.amount == -cost(entry.usage, PRICED.pricing) < 0


async def test_early_close_counts_tool_call_arguments(
    fake_store: Store, tasks: BackgroundTasks
) -> None:
    key_id = await new_key(fake_store)
    ctx = context(route=PRICED, key_id=key_id)
    upstream: list[Event] = [ToolCallStarted("c", "f"), ToolCallArgumentsDelta("c", "x" * 40)]
    metered = Meter(fake_store, tasks).wrap(stream([*upstream, Completed()]), ctx)
    await anext(metered)
    await anext(metered)
    await close(metered)
    await tasks.drain()
    (entry,) = await usage_entries(fake_store, key_id)
    assert entry.usage is not None and entry.usage.output_tokens >= 10  # 40 chars / 4


async def test_failure_without_usage_writes_no_entry(
    fake_store: Store, tasks: BackgroundTasks
) -> None:
    key_id = await new_key(fake_store)
    ctx = context(route=PRICED, key_id=key_id)
    out = await collect(Meter(fake_store, tasks).wrap(stream([Failed(UpstreamError("x"))]), ctx))
    assert len(out) == 1 and isinstance(out[0], Failed)
    await tasks.drain()
    assert await usage_entries(fake_store, key_id) == []
    assert await fake_store.balance(key_id) == 1_000


async def test_failure_after_content_is_charged(fake_store: Store, tasks: BackgroundTasks) -> None:
    key_id = await new_key(fake_store)
    ctx = context(route=PRICED, key_id=key_id)
    upstream: list[Event] = [TextDelta("part"), Failed(UpstreamError("cut"))]
    out = await collect(Meter(fake_store, tasks).wrap(stream(upstream), ctx))
    assert out == upstream  # no Usage injected before a failure
    await tasks.drain()
    (entry,) = await usage_entries(fake_store, key_id)
    assert entry.usage is not None and entry.usage.estimated and entry.usage.output_tokens == 1


async def test_ledger_sum_equals_balance_change(fake_store: Store, tasks: BackgroundTasks) -> None:
    key_id = await new_key(fake_store, balance=500)
    meter = Meter(fake_store, tasks)
    for i in range(5):
        ctx = context(route=PRICED, key_id=key_id, request_id=f"r{i}", charge_id=f"c{i}")
        await collect(meter.wrap(stream([TextDelta("t"), Usage(i, 3 * i + 1), Completed()]), ctx))
    await tasks.drain()
    ledger = await fake_store.ledger(key_id)
    assert len(ledger) == 6  # the initial credit and five charges
    assert sum(e.amount for e in ledger) == await fake_store.balance(key_id)
    charged = -sum(e.amount for e in ledger if e.kind == "usage")
    assert charged == sum(cost(Usage(i, 3 * i + 1), PRICED.pricing) for i in range(5))
    assert await fake_store.balance(key_id) == 500 - charged


async def test_free_route_still_records_usage(fake_store: Store, tasks: BackgroundTasks) -> None:
    key_id = await new_key(fake_store, balance=0)
    ctx = context(route=Route(backend="echo"), key_id=key_id)
    await collect(Meter(fake_store, tasks).wrap(stream([Usage(5, 5), Completed()]), ctx))
    await tasks.drain()
    (entry,) = await usage_entries(fake_store, key_id)
    assert entry.amount == 0 and entry.usage == Usage(5, 5)


async def test_settle_retries_when_the_store_is_unavailable(
    fake_store: Store, tasks: BackgroundTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id = await new_key(fake_store)
    real_settle = fake_store.settle
    calls = 0

    async def flaky(charge: Charge) -> bool:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ServiceUnavailable("down")
        return await real_settle(charge)

    monkeypatch.setattr(fake_store, "settle", flaky)
    monkeypatch.setattr("gateway.metering.asyncio.sleep", _no_sleep)
    ctx = context(route=PRICED, key_id=key_id)
    await collect(Meter(fake_store, tasks).wrap(stream([Usage(10, 0), Completed()]), ctx))
    await tasks.drain()
    assert calls == 3
    assert len(await usage_entries(fake_store, key_id)) == 1


async def test_settle_gives_up_and_logs(
    fake_store: Store,
    tasks: BackgroundTasks,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def down(charge: Charge) -> bool:
        nonlocal calls
        calls += 1
        raise ServiceUnavailable("down")

    monkeypatch.setattr(fake_store, "settle", down)
    monkeypatch.setattr("gateway.metering.asyncio.sleep", _no_sleep)
    ctx = context(route=PRICED, request_id="req_lost")
    with caplog.at_level(logging.ERROR, logger="gateway.metering"):
        await collect(Meter(fake_store, tasks).wrap(stream([Usage(10, 0), Completed()]), ctx))
        await tasks.drain()
    assert calls == SETTLE_ATTEMPTS
    assert "req_lost" in caplog.text


_real_sleep = asyncio.sleep


def _no_sleep(delay: float) -> Coroutine[Any, Any, None]:
    return _real_sleep(0)
