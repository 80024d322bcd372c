"""Amounts at every magnitude on a real Redis (its Lua numbers are doubles; fakeredis's
Lua is not the same Lua): exact integers in, exact integers out, and a script refused
whole when an amount is out of range."""

from __future__ import annotations

import time

import pytest
from redis import asyncio as aioredis

from gateway import amounts
from gateway.errors import InvalidRequest, ServiceUnavailable
from gateway.events import Completed, TextDelta, Usage
from gateway.metering import Meter
from gateway.route import Route
from gateway.settings import MeteringSettings
from gateway.store import Store, schema
from gateway.store.holds import Admitted, Charge, HoldRecord, Holds
from gateway.tasks import BackgroundTasks
from tests.conftest import invocation
from tests.gateway.factories import batches, collect, pricing

BIG = 200_000_000_000_001  # past 1e14, where Lua's tostring() switched to floats


@pytest.fixture
async def store(redis_client: aioredis.Redis) -> Store:
    return Store(redis_client)


async def assert_ledger_is_the_balance(store: Store, key_id: str) -> None:
    entries = await store.ledger(key_id)
    for entry in entries:
        assert type(entry.amount) is int and type(entry.balance) is int
    assert sum(e.amount for e in entries) == await store.balance(key_id)
    assert entries[-1].balance == await store.balance(key_id)


async def test_large_credits_and_charges_stay_exact(store: Store) -> None:
    key, _ = await store.create_key("big", balance=BIG)
    assert await store.credit(key.id, BIG) == 2 * BIG
    assert await store.credit(key.id, -123_456_789_012_345) == 2 * BIG - 123_456_789_012_345
    raw = await store.redis.xrange(schema.ledger(key.id))
    assert all("e" not in fields["balance"] for _, fields in raw)  # printed as integers
    await assert_ledger_is_the_balance(store, key.id)


async def test_a_balance_beyond_the_bound_is_refused_and_nothing_written(store: Store) -> None:
    key, _ = await store.create_key("edge", balance=amounts.MAX_CREDITS)
    before = await store.ledger(key.id)
    with pytest.raises(InvalidRequest, match="beyond"):
        await store.credit(key.id, 1)
    with pytest.raises(InvalidRequest):
        await store.credit(key.id, 2**63 - 1)
    assert await store.ledger(key.id) == before
    assert await store.balance(key.id) == amounts.MAX_CREDITS


async def test_a_key_too_rich_is_refused_before_it_exists(store: Store) -> None:
    with pytest.raises(InvalidRequest):
        await store.create_key("rich", balance=2**63)
    assert await store.list_keys() == []


async def test_settle_refuses_an_out_of_range_amount_whole(store: Store) -> None:
    """Before, settle.lua set its marker and dropped the hold, then failed on the amount:
    the outbox found the marker and counted the request as settled, free."""
    key, _ = await store.create_key("k", balance=1_000)
    holds = Holds(store.redis)
    now = time.time()
    record = HoldRecord(500, 10, now + 30, "req", key.id, "echo", "", now)
    assert isinstance(await holds.admit("charge", record, key.limits, True, None), Admitted)
    with pytest.raises(ServiceUnavailable):
        await holds.settle(Charge(record, "charge", 10**17, 10, {"kind": "usage"}, route=False))
    assert await store.redis.exists(schema.entry_marker(key.id, "charge")) == 0
    assert await store.held(key.id) == 500  # the hold is still there, to be settled right
    assert await holds.settle(Charge(record, "charge", 400, 10, {"kind": "usage"}, route=False))
    assert await store.balance(key.id) == 600 and await store.held(key.id) == 0


@pytest.mark.parametrize("output_tokens", [10**12, 10**17, 2**63, 10**30])
async def test_a_huge_usage_is_charged_its_hold_not_more_and_not_nothing(
    store: Store, output_tokens: int
) -> None:
    tasks = BackgroundTasks()
    meter = Meter(Holds(store.redis), tasks, MeteringSettings())
    key, _ = await store.create_key("k", balance=BIG)
    route = Route(backend="echo", pricing=pricing(input="1", output="2"), max_output_tokens=100)
    hold = await meter.admit(invocation(), key, route, "req_huge")
    events = [TextDelta("hi"), Usage(5, output_tokens), Completed()]
    out = await collect(meter.wrap(batches(events), hold))
    (usage,) = [e for e in out if isinstance(e, Usage)]
    assert usage.output_tokens == min(output_tokens, amounts.MAX_TOKENS)
    assert usage.credits == hold.record.credits  # clamped to the hold
    assert hold.billing_headers()["x-gateway-cost"] == str(hold.record.credits)
    meter.settle(hold, "echo")
    await tasks.drain()
    (entry,) = [e for e in await store.ledger(key.id) if e.kind == "usage"]
    assert entry.amount == -hold.record.credits == -entry.held
    assert entry.unbilled == 5 + 2 * usage.output_tokens - hold.record.credits > 0
    assert await store.balance(key.id) == BIG - hold.record.credits >= 0
    await assert_ledger_is_the_balance(store, key.id)
