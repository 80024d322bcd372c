"""The gateway-wide totals: counted in memory, added to Redis by a flush, once."""

from __future__ import annotations

import asyncio
from itertools import chain

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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


TOKEN_TEXT = st.one_of(
    st.integers(min_value=0, max_value=10**6).map(str), st.sampled_from(["0", "x", "-3", ""])
)
SETTLED = st.tuples(
    st.sampled_from(["key_a", "key_b", "key_c"]),
    st.sampled_from(["echo", "coder", "a|b"]),
    st.integers(min_value=0, max_value=10**9),
    st.booleans(),
    st.dictionaries(st.sampled_from(gateway_totals.TOKEN_FIELDS), TOKEN_TEXT),
    st.sampled_from([(HOUR, DAY), ("2026010113", DAY), ("2026010200", "20260102")]),
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(SETTLED, max_size=30))
def test_what_a_flush_adds_is_each_requests_counts_summed(
    settled: list[tuple[str, str, int, bool, dict[str, str], tuple[str, str]]],
) -> None:
    """``pending()``: per hour the sum of every request's counts, per day each agent's
    (``<metric>|<agent>``), a metric no request counted absent; each day's credits by
    key. Counted here one request at a time, as ``add`` counted before it kept an
    agent's counts in a list."""
    totals = GatewayTotals(aioredis.Redis(), 60, 600)
    sums: dict[tuple[str, str], dict[str, int]] = {}
    spenders: dict[str, dict[str, int]] = {}
    for key_id, agent, credits, failed, fields, (hour, day) in settled:
        flat = list(chain.from_iterable(fields.items()))
        totals.add(key_id, agent, credits, failed, fields if failed else flat, hour, day)
        hours = sums.setdefault(("hour", schema.global_hour(hour)), {})
        days = sums.setdefault(("day", schema.global_day(day)), {})
        spent = spenders.setdefault(schema.global_top_keys(day), {})
        counts = [("requests", 1)]
        if failed:
            counts.append(("errors", 1))
        if credits:
            counts.append(("credits", credits))
            spent[key_id] = spent.get(key_id, 0) + credits
        for name in gateway_totals.TOKEN_FIELDS:
            value = fields.get(name, "0")
            if value != "0" and value.isdigit():
                counts.append((name, int(value)))
        for name, n in counts:
            hours[name] = hours.get(name, 0) + n
            days[f"{name}|{agent}"] = days.get(f"{name}|{agent}", 0) + n
    assert totals.pending() == (sums, spenders)
