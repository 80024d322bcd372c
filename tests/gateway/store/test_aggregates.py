"""Aggregates: settlement and credits count in a key's hours and days, exactly and once,
and in the gateway's; reading them is a hash per bucket."""

from __future__ import annotations

import time

import pytest
from redis import asyncio as aioredis

from gateway.errors import ServiceUnavailable
from gateway.store import Store, aggregates, schema
from gateway.store.holds import Charge, HoldRecord, Holds


def record(key_id: str, agent: str = "echo", credits: int = 1000) -> HoldRecord:
    now = time.time()
    return HoldRecord(credits, 100, now + 30, "req", key_id, agent, "echo", now)


def fields(agent: str, input_tokens: int, output_tokens: int) -> dict[str, str]:
    return {
        "kind": "usage",
        "agent": agent,
        "input_tokens": str(input_tokens),
        "output_tokens": str(output_tokens),
        "cached_input_tokens": "0",
        "cache_write_tokens": "0",
        "reasoning_tokens": "0",
    }


async def settle(
    holds: Holds, key_id: str, charge: str, agent: str, credits: int, *, failed: bool = False
) -> bool:
    return await holds.settle(
        Charge(record(key_id, agent), charge, credits, 30, fields(agent, 10, 20), route=False,
               failed=failed)
    )  # fmt: skip


async def test_settlement_counts_in_the_keys_hour_and_day_and_by_agent(fake_store: Store) -> None:
    key, _ = await fake_store.create_key("k", balance=10_000)
    holds = Holds(fake_store.redis)
    assert await settle(holds, key.id, "c1", "echo", 70)
    assert await settle(holds, key.id, "c2", "other", 5, failed=True)
    assert not await settle(holds, key.id, "c1", "echo", 70)  # once per charge id

    days = await aggregates.read(fake_store.redis, key.id, "day", 3)
    assert len(days.buckets) == 3 and days.buckets[-1].label == time.strftime("%Y-%m-%d")
    today = days.buckets[-1].totals
    assert (today.credits, today.requests, today.errors) == (75, 2, 1)
    assert (today.input_tokens, today.output_tokens) == (20, 40)
    assert today.credited == 10_000  # the initial balance, by post_entry.lua
    assert [a for a, _ in days.by_agent] == ["echo", "other"]
    assert dict(days.by_agent)["other"].errors == 1
    hours = await aggregates.read(fake_store.redis, key.id, "hour", 24)
    assert hours.total.credits == 75 and hours.buckets[-1].totals.requests == 2
    ttl = await fake_store.redis.ttl(
        schema.aggregate_hour(key.id, time.strftime("%Y%m%d%H", time.gmtime()))
    )
    assert 0 < ttl <= 8 * 86400

    assert await aggregates.read(fake_store.redis, None, "day", 30) == aggregates.Aggregates(
        "gateway",
        "day",
        (await aggregates.read(fake_store.redis, None, "day", 30)).buckets,
        aggregates.Totals(),
        (),
    )  # the gateway's totals wait for their flush
    await holds.totals.flush()
    gateway = await aggregates.read(fake_store.redis, None, "day", 30)
    assert gateway.total.credits == 75 and gateway.total.requests == 2
    assert gateway.top_keys == ((key.id, 75),)
    assert gateway.to_json()["top_keys"] == [{"id": key.id, "credits": 75}]


async def test_a_debit_counts_as_debited(fake_store: Store) -> None:
    key, _ = await fake_store.create_key("k", balance=100)
    await fake_store.credit(key.id, -40, note="refund")
    today = (await aggregates.read(fake_store.redis, key.id, "day", 1)).total
    assert (today.credited, today.debited, today.credits) == (100, 40, 0)


async def test_the_real_redis_agrees_and_a_bad_count_writes_nothing(
    redis_client: aioredis.Redis,
) -> None:
    store = Store(redis_client)
    key, _ = await store.create_key("k", balance=1000)
    holds = Holds(redis_client)
    bad = fields("echo", 10, 20) | {"output_tokens": "1e99"}
    with pytest.raises(ServiceUnavailable):  # the script's error reply
        await holds.settle(Charge(record(key.id), "c1", 5, 30, bad, route=False))
    assert await store.balance(key.id) == 1000  # refused before anything was written
    assert await settle(holds, key.id, "c2", "echo", 7)
    read = await aggregates.read(redis_client, key.id, "day", 1)
    assert read.total.credits == 7 and read.total.requests == 1


def test_parse_sums_the_agents_and_ignores_what_it_does_not_know() -> None:
    fields = {"credits|a|b": "3", "credits|c": "4", "credited": "9", "junk": "x", "errors": "?"}
    total, agents = aggregates.parse(fields)
    assert (total.credits, total.credited) == (7, 9)
    assert agents == {"a|b": aggregates.Totals(credits=3), "c": aggregates.Totals(credits=4)}


async def test_a_large_top_is_summed_by_redis_and_kept_a_minute(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aggregates, "TOP_CACHE_FROM", 0)
    holds = Holds(fake_store.redis)
    a, _ = await fake_store.create_key("a", balance=1000)
    b, _ = await fake_store.create_key("b", balance=1000)
    await settle(holds, a.id, "c1", "echo", 5)
    await settle(holds, b.id, "c2", "echo", 9)
    await holds.totals.flush()
    read = await aggregates.read(fake_store.redis, None, "day", 30, top=1)
    assert read.top_keys == ((b.id, 9),)
    await settle(holds, a.id, "c3", "echo", 50)
    await holds.totals.flush()
    stale = await aggregates.read(fake_store.redis, None, "day", 30, top=1)
    assert stale.top_keys == ((b.id, 9),) and stale.total.credits == 64  # totals are fresh
