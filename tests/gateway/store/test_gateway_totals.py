"""The gateway-wide totals: counted in memory, added to Redis by a flush, once."""

from __future__ import annotations

import asyncio

import pytest
from redis import asyncio as aioredis

from gateway.store import Store, aggregates, gateway_totals, schema
from gateway.store.gateway_totals import GatewayTotals
from tests.conftest import free_port

HOUR, DAY = "2026010112", "20260101"


async def test_a_flush_adds_the_sums_once(fake_store: Store) -> None:
    totals = GatewayTotals(fake_store.redis, 60, 600)
    usage = {"input_tokens": "10", "output_tokens": "0", "reasoning_tokens": "x"}
    totals.add("key_a", "echo", 7, False, usage, HOUR, DAY)
    totals.add("key_b", "echo", 0, True, {}, HOUR, DAY)
    totals.add("key_a", "coder", 3, False, usage, HOUR, DAY)
    await totals.flush()
    await totals.flush()  # nothing more
    redis = fake_store.redis
    hour = await redis.hgetall(schema.global_hour(HOUR))
    assert hour == {"requests": "3", "errors": "1", "credits": "10", "input_tokens": "20"}
    total, agents = aggregates.parse(await redis.hgetall(schema.global_day(DAY)))
    assert (total.credits, total.requests, total.errors) == (10, 3, 1)
    assert agents["coder"] == aggregates.Totals(credits=3, requests=1, input_tokens=10)
    assert await redis.zrange(schema.global_top_keys(DAY), 0, -1, withscores=True) == [
        ("key_a", 10.0)
    ]
    assert 0 < await redis.ttl(schema.global_hour(HOUR)) <= 60
    assert 60 < await redis.ttl(schema.global_top_keys(DAY)) <= 600


async def test_a_flush_that_fails_is_dropped_and_said(caplog: pytest.LogCaptureFixture) -> None:
    dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.2)
    totals = GatewayTotals(dead, 60, 60)
    totals.add("key_1", "echo", 5, False, {"input_tokens": "3"}, HOUR, DAY)
    await totals.flush()
    await dead.aclose()
    assert "missed 1 requests" in caplog.text
    await totals.flush()  # nothing left to send
    assert caplog.text.count("missed") == 1


async def test_run_flushes_until_cancelled_and_once_more(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway_totals, "FLUSH_SECONDS", 0.01)
    totals = GatewayTotals(fake_store.redis, 60, 60)
    running = asyncio.create_task(totals.run())
    totals.add("key_1", "echo", 1, False, {}, HOUR, DAY)
    await asyncio.sleep(0.05)
    assert await fake_store.redis.hget(schema.global_hour(HOUR), "requests") == "1"
    totals.add("key_1", "echo", 1, False, {}, HOUR, DAY)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert await fake_store.redis.hget(schema.global_hour(HOUR), "requests") == "2"


async def test_each_request_counts_in_its_own_hour_and_day(fake_store: Store) -> None:
    """The last buckets are kept between requests: a new hour or day gets its own."""
    totals = GatewayTotals(fake_store.redis, 60, 600)
    totals.add("key_a", "echo", 1, False, {}, HOUR, DAY)
    totals.add("key_a", "echo", 2, False, {}, "2026010113", DAY)
    totals.add("key_a", "echo", 4, False, {}, "2026010200", "20260102")
    totals.add("key_a", "echo", 8, False, {}, HOUR, DAY)  # a late settlement of hour 12
    await totals.flush()
    redis = fake_store.redis
    assert await redis.hget(schema.global_hour(HOUR), "credits") == "9"
    assert await redis.hget(schema.global_hour("2026010113"), "credits") == "2"
    assert await redis.hget(schema.global_day(DAY), "credits|echo") == "11"
    assert await redis.hget(schema.global_day("20260102"), "credits|echo") == "4"
    assert await redis.zscore(schema.global_top_keys(DAY), "key_a") == 11
    totals.add("key_b", "echo", 0, False, {}, HOUR, DAY)  # after a flush: fresh buckets
    await totals.flush()
    assert await redis.hget(schema.global_hour(HOUR), "requests") == "3"
    assert await redis.zscore(schema.global_top_keys(DAY), "key_b") is None


def test_flat_fields_count_as_the_dict_of_them() -> None:
    """``ledger_tokens``: the token counts of flat fields, read in place in
    ``settlement.ledger_fields``' order and by name in any other, as of a dict."""
    in_order = ["kind", "usage", *["x", "y"] * 6]
    in_order += ["input_tokens", "10", "output_tokens", "0", "cached_input_tokens", "3"]
    in_order += ["cache_write_tokens", "x", "reasoning_tokens", "2", "unbilled", "5"]
    other = ["output_tokens", "4", "agent", "input_tokens", "input_tokens", "7"]
    for flat in (in_order, other, [], ["input_tokens"]):
        as_dict = dict(zip(flat[::2], flat[1::2], strict=False))
        assert gateway_totals.ledger_tokens(flat) == gateway_totals.ledger_tokens(as_dict)
    assert gateway_totals.ledger_tokens(in_order) == ["10", "0", "3", "x", "2"]
    assert gateway_totals.ledger_tokens(other) == ["7", "4", "0", "0", "0"]
