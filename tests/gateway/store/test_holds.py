"""Holds on fakeredis (with Lua): admission, settlement, leases."""

from __future__ import annotations

import calendar
import dataclasses
import inspect
import math
import random
import struct
import sys
import time
import uuid
from itertools import chain
from typing import Any

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway import metrics
from gateway.errors import ServiceUnavailable
from gateway.store import Store, pipelining, schema
from gateway.store import holds as holds_module
from gateway.store.holds import Admitted, Charge, HoldRecord, Holds, Refusal, window_of
from gateway.store.records import KeyLimits

ROUTE = schema.route_account("echo")


def record(
    key_id: str,
    *,
    credits: int = 100,
    tokens: int = 50,
    lease: float = 30.0,
    agent: str = "echo",
    started_at: float | None = None,
    request_id: str = "req_1",
) -> HoldRecord:
    now = time.time() if started_at is None else started_at
    return HoldRecord(
        credits=credits,
        tokens=tokens,
        lease_until=now + lease,
        request_id=request_id,
        key_id=key_id,
        agent=agent,
        backend="",
        started_at=now,
        input_tokens=7,
        progress_credits=7,
    )


def fields(**extra: str) -> dict[str, str]:
    out = {
        "kind": "usage",
        "request_id": "req_1",
        "agent": "echo",
        "backend": "scripted",
        "started_at": "1700000000.5",
        "at": repr(time.time()),
        "estimated": "1",
        "input_tokens": "11",
        "output_tokens": "22",
        "cached_input_tokens": "3",
        "cache_write_tokens": "0",
        "reasoning_tokens": "4",
    }
    out.update(extra)
    return out


async def new_key(store: Store, balance: int = 1_000) -> str:
    key, _ = await store.create_key("k", balance=balance)
    return key.id


async def holds_of(store: Store, account: str) -> dict[str, str]:
    r: Any = store.redis
    return dict(await r.hgetall(schema.holds(account)))


async def counter(store: Store, name: str) -> int:
    return int(await store.redis.get(name) or 0)


async def admit(
    holds: Holds,
    rec: HoldRecord,
    limits: KeyLimits | None = None,
    *,
    route: KeyLimits | None = None,
    check_money: bool = True,
    charge_id: str | None = None,
) -> tuple[str, Admitted | Refusal]:
    charge_id = charge_id or uuid.uuid4().hex
    result = await holds.admit(charge_id, rec, limits or KeyLimits(), check_money, route)
    return charge_id, result


def refused(result: Admitted | Refusal, reason: str) -> Refusal:
    assert isinstance(result, Refusal), result
    assert result.reason == reason, result
    return result


# admit


async def test_admit_holds_credits_and_leaves_the_balance(fake_store: Store) -> None:
    key = await new_key(fake_store, 1_000)
    holds = Holds(fake_store.redis)
    rec = record(key, credits=300, tokens=50)
    charge, result = await admit(holds, rec)
    assert result == Admitted(balance=1_000, held=300, requests=1, tokens=50)
    assert await fake_store.balance(key) == 1_000
    assert await fake_store.held(key) == 300
    assert await holds_of(fake_store, key) == {charge: rec.encode()}
    member = f"{key} {charge}"
    assert await fake_store.redis.zscore(schema.LEASES, member) == pytest.approx(rec.lease_until)
    _, second = await admit(holds, record(key, credits=200, tokens=5))
    assert second == Admitted(balance=1_000, held=500, requests=2, tokens=55)


async def test_admit_refuses_what_the_unheld_balance_cannot_cover(fake_store: Store) -> None:
    key = await new_key(fake_store, 1_000)
    holds = Holds(fake_store.redis)
    first, _ = await admit(holds, record(key, credits=600))
    charge, result = await admit(holds, record(key, credits=401))
    assert refused(result, "quota") == Refusal("quota", 1_000, 600)
    assert await fake_store.held(key) == 600
    assert list(await holds_of(fake_store, key)) == [first]
    assert await fake_store.redis.zscore(schema.LEASES, f"{key} {charge}") is None
    _, exact = await admit(holds, record(key, credits=400))  # balance - held == credits
    assert isinstance(exact, Admitted) and exact.held == 1_000
    assert await fake_store.balance(key) == 1_000


async def test_admit_without_money_check_needs_no_balance(fake_store: Store) -> None:
    key = await new_key(fake_store, 0)
    holds = Holds(fake_store.redis)
    _, result = await admit(holds, record(key, credits=0), check_money=False)
    assert isinstance(result, Admitted) and result.held == 0
    _, priced = await admit(holds, record(key, credits=1))
    refused(priced, "quota")


async def test_admit_limits_concurrency(fake_store: Store) -> None:
    key = await new_key(fake_store)
    holds = Holds(fake_store.redis)
    limits = KeyLimits(max_concurrent=2)
    first, a = await admit(holds, record(key, credits=1), limits)
    _, b = await admit(holds, record(key, credits=1), limits)
    assert isinstance(a, Admitted) and isinstance(b, Admitted)
    _, c = await admit(holds, record(key, credits=1), limits)
    assert refused(c, "concurrency") == Refusal("concurrency", 2, 2)
    assert await fake_store.held(key) == 2
    await holds.settle(Charge(record(key, credits=1), first, 1, 50, fields(), route=False))
    _, d = await admit(holds, record(key, credits=1), limits)
    assert isinstance(d, Admitted)


async def test_admit_limits_requests_per_window(fake_store: Store) -> None:
    key = await new_key(fake_store)
    holds = Holds(fake_store.redis)
    limits = KeyLimits(rpm=2)
    for _ in range(2):
        _, ok = await admit(holds, record(key, credits=1), limits)
        assert isinstance(ok, Admitted)
    _, result = await admit(holds, record(key, credits=1), limits)
    refusal = refused(result, "requests")
    assert (refusal.current, refusal.limit) == (2, 2)
    assert 0 < refusal.retry_after <= 60
    assert await fake_store.held(key) == 2
    # A request in the next window is admitted again.
    _, later = await admit(holds, record(key, credits=1, started_at=time.time() + 60), limits)
    assert isinstance(later, Admitted) and later.requests == 1


async def test_admit_limits_tokens_per_window(fake_store: Store) -> None:
    key = await new_key(fake_store)
    holds = Holds(fake_store.redis)
    limits = KeyLimits(tpm=100)
    _, a = await admit(holds, record(key, credits=1, tokens=60), limits)
    assert isinstance(a, Admitted) and a.tokens == 60
    _, b = await admit(holds, record(key, credits=1, tokens=41), limits)
    refusal = refused(b, "tokens")
    assert (refusal.current, refusal.limit) == (60, 100) and refusal.retry_after > 0
    _, c = await admit(holds, record(key, credits=1, tokens=40), limits)
    assert isinstance(c, Admitted) and c.tokens == 100


async def test_admit_daily_budget_counts_spend_and_holds(fake_store: Store) -> None:
    key = await new_key(fake_store, 10_000)
    holds = Holds(fake_store.redis)
    limits = KeyLimits(daily_budget=500)
    rec = record(key, credits=300)
    first, a = await admit(holds, rec, limits)
    assert isinstance(a, Admitted)
    _, b = await admit(holds, record(key, credits=201), limits)  # 300 held + 201 > 500
    assert refused(b, "daily_budget") == Refusal("daily_budget", 0, 500)
    assert await holds.settle(Charge(rec, first, 250, 50, fields(), route=False))
    _, c = await admit(holds, record(key, credits=251), limits)  # 250 spent + 251 > 500
    assert refused(c, "daily_budget") == Refusal("daily_budget", 250, 500)
    _, d = await admit(holds, record(key, credits=250), limits)
    assert isinstance(d, Admitted)
    assert await fake_store.held(key) == 250


async def test_admit_monthly_budget(fake_store: Store) -> None:
    key = await new_key(fake_store, 10_000)
    holds = Holds(fake_store.redis)
    limits = KeyLimits(daily_budget=1_000, monthly_budget=400)
    rec = record(key, credits=300)
    first, _ = await admit(holds, rec, limits)
    assert await holds.settle(Charge(rec, first, 300, 50, fields(), route=False))
    _, b = await admit(holds, record(key, credits=101), limits)
    assert refused(b, "monthly_budget") == Refusal("monthly_budget", 300, 400)
    _, c = await admit(holds, record(key, credits=100), limits)
    assert isinstance(c, Admitted)


async def test_a_route_refusal_leaves_nothing_held_for_the_key(fake_store: Store) -> None:
    key = await new_key(fake_store)
    other = await new_key(fake_store)
    holds = Holds(fake_store.redis)
    route = KeyLimits(max_concurrent=1)
    busy, a = await admit(holds, record(other, credits=10), route=route)
    assert isinstance(a, Admitted)
    assert list(await holds_of(fake_store, ROUTE)) == [busy]
    charge, b = await admit(holds, record(key, credits=10, tokens=30), route=route)
    assert refused(b, "concurrency") == Refusal("concurrency", 1, 1)
    assert await fake_store.held(key) == 0
    assert await holds_of(fake_store, key) == {}
    window = window_of(time.time())
    assert await counter(fake_store, schema.tokens_window(key, window)) == 0
    assert await counter(fake_store, schema.requests_window(key, window)) == 0
    assert await fake_store.redis.zscore(schema.LEASES, f"{key} {charge}") is None
    assert await fake_store.held(ROUTE) == 0  # a route holds no money
    assert list(await holds_of(fake_store, ROUTE)) == [busy]


async def test_a_key_refusal_leaves_nothing_held_for_the_route(fake_store: Store) -> None:
    key = await new_key(fake_store, 5)
    holds = Holds(fake_store.redis)
    route = KeyLimits(rpm=2, tpm=1_000, max_concurrent=5)
    charge, result = await admit(holds, record(key, credits=10, tokens=30), route=route)
    refused(result, "quota")
    assert await fake_store.held(ROUTE) == 0
    assert await holds_of(fake_store, ROUTE) == {}
    window = window_of(time.time())
    assert await counter(fake_store, schema.tokens_window(ROUTE, window)) == 0
    # A refused request does not use up the route's shared requests per minute.
    assert await counter(fake_store, schema.requests_window(ROUTE, window)) == 0
    assert await fake_store.redis.zscore(schema.LEASES, f"{key} {charge}") is None
    rich = await new_key(fake_store, 1_000)
    for _ in range(2):
        _, ok = await admit(holds, record(rich, credits=10), route=route)
        assert isinstance(ok, Admitted)


async def test_route_limits_are_shared_by_keys(fake_store: Store) -> None:
    a, b = await new_key(fake_store), await new_key(fake_store)
    holds = Holds(fake_store.redis)
    route = KeyLimits(tpm=100)
    first, ok = await admit(holds, record(a, tokens=70), route=route)
    assert isinstance(ok, Admitted)
    _, no = await admit(holds, record(b, tokens=70), route=route)
    refusal = refused(no, "tokens")
    assert (refusal.current, refusal.limit) == (70, 100)
    # Settling corrects the route's window too: 70 reserved, 20 used.
    assert await holds.settle(Charge(record(a, tokens=70), first, 5, 20, fields(), route=True))
    assert await fake_store.held(ROUTE) == 0 and await holds_of(fake_store, ROUTE) == {}
    window = window_of(time.time())
    assert await counter(fake_store, schema.tokens_window(ROUTE, window)) == 20
    _, yes = await admit(holds, record(b, tokens=70), route=route)
    assert isinstance(yes, Admitted)


# settle


async def test_settle_charges_releases_and_writes_the_ledger(fake_store: Store) -> None:
    key = await new_key(fake_store, 1_000)
    holds = Holds(fake_store.redis)
    rec = record(key, credits=300, tokens=80)
    charge, _ = await admit(holds, rec)
    assert await holds.settle(Charge(rec, charge, 123, 33, fields(), route=False))
    assert await fake_store.balance(key) == 877
    assert await fake_store.held(key) == 0
    assert await holds_of(fake_store, key) == {}
    assert await fake_store.redis.zscore(schema.LEASES, f"{key} {charge}") is None
    entry = (await fake_store.ledger(key))[-1]
    assert entry.kind == "usage"
    assert (entry.amount, entry.held, entry.balance) == (-123, 300, 877)
    assert (entry.request_id, entry.agent, entry.backend) == ("req_1", "echo", "scripted")
    assert entry.started_at == 1700000000.5 and entry.at > 0 and not entry.reaped
    assert entry.usage is not None and entry.usage.estimated
    assert (entry.usage.input_tokens, entry.usage.output_tokens) == (11, 22)
    assert (entry.usage.cached_input_tokens, entry.usage.reasoning_tokens) == (3, 4)


async def test_settle_is_idempotent_per_charge_id(fake_store: Store) -> None:
    key = await new_key(fake_store, 1_000)
    holds = Holds(fake_store.redis)
    rec = record(key, credits=300)
    charge, _ = await admit(holds, rec)
    _, other = await admit(holds, record(key, credits=100))
    assert isinstance(other, Admitted)
    assert await holds.settle(Charge(rec, charge, 50, 10, fields(), route=True))
    before = (
        await fake_store.balance(key),
        await fake_store.held(key),
        await fake_store.ledger(key),
    )
    assert not await holds.settle(Charge(rec, charge, 70, 10, fields(), route=True))
    after = (
        await fake_store.balance(key),
        await fake_store.held(key),
        await fake_store.ledger(key),
    )
    assert after == before == (950, 100, before[2])
    assert len(before[2]) == 2  # the initial credit and one charge


async def test_settle_corrects_the_window_and_counts_spend(fake_store: Store) -> None:
    key = await new_key(fake_store, 1_000)
    holds = Holds(fake_store.redis)
    window = window_of(time.time())
    rec = record(key, credits=300, tokens=80)
    charge, _ = await admit(holds, rec)
    assert await counter(fake_store, schema.tokens_window(key, window)) == 80
    await holds.settle(Charge(rec, charge, 40, 25, fields(), route=False))
    assert await counter(fake_store, schema.tokens_window(key, window)) == 25
    day, month = time.strftime("%Y%m%d", time.gmtime()), time.strftime("%Y%m", time.gmtime())
    assert await counter(fake_store, schema.spend_day(key, day)) == 40
    assert await counter(fake_store, schema.spend_month(key, month)) == 40
    rec2 = record(key, credits=10, tokens=5)
    charge2, _ = await admit(holds, rec2)
    await holds.settle(
        Charge(rec2, charge2, 7, 9, fields(), route=False)
    )  # more tokens than reserved
    assert await counter(fake_store, schema.tokens_window(key, window)) == 25 + 9
    assert await counter(fake_store, schema.spend_day(key, day)) == 47
    assert await counter(fake_store, schema.spend_month(key, month)) == 47


async def test_a_settlement_that_cost_nothing_only_releases(fake_store: Store) -> None:
    key = await new_key(fake_store, 1_000)
    holds = Holds(fake_store.redis)
    rec = record(key, credits=300)
    charge, _ = await admit(holds, rec)
    assert await holds.settle(Charge(rec, charge, 0, 0, fields(), route=False))
    assert await fake_store.held(key) == 0 and await holds_of(fake_store, key) == {}
    assert await fake_store.balance(key) == 1_000
    assert [e.kind for e in await fake_store.ledger(key)] == ["credit"]


ODD_VALUES = {
    "request_id": 'req "1" \\ /\n\t\x00\x7f',
    "agent": "agent é ✓ 🚀 \u2028",
    "backend": "",
}


@pytest.mark.parametrize("real", [False, True])
async def test_the_ledger_entry_keeps_its_fields_byte_for_byte_in_order(
    real: bool, fake_store: Store, redis_client: aioredis.Redis
) -> None:
    """The fields go to the script as one JSON argument (``holds.ledger_argument``): the
    entry holds each as given (quotes, control characters, any Unicode), in order, then
    amount, held and balance; on a real Redis (its cjson) and on fakeredis."""
    store = Store(redis_client) if real else fake_store
    key = await new_key(store, 1_000)
    holds = Holds(store.redis)
    rec = record(key, credits=300)
    charge, _ = await admit(holds, rec)
    sent = fields(**ODD_VALUES, unbilled="5")
    assert await holds.settle(Charge(rec, charge, 123, 33, sent, route=False))
    r: Any = store.redis
    [(_, entry)] = await r.xrevrange(schema.ledger(key), count=1)
    expected = [*chain.from_iterable(sent.items()), "amount", "-123", "held", "300"]
    assert list(chain.from_iterable(entry.items())) == [*expected, "balance", "877"]
    assert next(iter(entry)) == "kind"  # the order as sent, not a hash's


def test_the_ledger_argument_is_a_flat_json_array() -> None:
    argument = holds_module.ledger_argument({"a": "1", "b": "é"})
    assert argument == '["a","1","b","é"]'.encode()
    assert holds_module.ledger_argument({}) == b"[]"


@pytest.mark.parametrize("fields_json", ["not json", '["kind"]', '["kind", 1]', '[["a"], "b"]'])
async def test_malformed_ledger_fields_are_refused_before_anything_is_written(
    fields_json: str, redis_client: aioredis.Redis
) -> None:
    store = Store(redis_client)
    key = await new_key(store, 1_000)
    holds = Holds(store.redis)
    rec = record(key, credits=300)
    charge, _ = await admit(holds, rec)
    original = holds_module.ledger_argument
    holds_module.ledger_argument = lambda fields: fields_json.encode()  # type: ignore[assignment]
    try:
        with pytest.raises(ServiceUnavailable):
            await holds.settle(Charge(rec, charge, 123, 33, fields(), route=False))
    finally:
        holds_module.ledger_argument = original
    assert await store.balance(key) == 1_000 and await store.held(key) == 300
    assert await redis_client.exists(schema.entry_marker(key, charge)) == 0


async def test_an_admission_redis_cannot_take_is_a_503_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``Holds.admit`` catches the Redis error itself (not through ``guard()``): the same
    503, the same count by error class and the same warning."""
    dead = aioredis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    failures = metrics.REDIS_ERRORS.labels("ConnectionError")
    before = failures._value.get()
    with pytest.raises(ServiceUnavailable) as refused:
        await admit(Holds(dead), record("k"))
    assert isinstance(refused.value.__cause__, RedisConnectionError)
    assert failures._value.get() == before + 1
    assert "store unavailable: ConnectionError" in caplog.text
    await dead.aclose()


@pytest.mark.parametrize("real", [False, True])
async def test_an_admission_after_redis_forgot_its_scripts_loads_them_and_holds_once(
    real: bool, fake_store: Store, redis_client: aioredis.Redis
) -> None:
    store = Store(redis_client) if real else fake_store
    key = await new_key(store, 1_000)
    holds = Holds(store.redis)
    await admit(holds, record(key, credits=100))
    await store.redis.script_flush()  # a restart, a failover
    _, result = await admit(holds, record(key, credits=200))
    assert isinstance(result, Admitted) and result.held == 300
    assert await store.held(key) == 300 and len(await holds_of(store, key)) == 2


async def test_an_admission_whose_scripts_cannot_be_loaded_again_is_a_503(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await new_key(fake_store, 1_000)
    holds = Holds(fake_store.redis)
    await fake_store.redis.script_flush()

    async def refused(script: str) -> str:
        raise RedisConnectionError("gone")

    monkeypatch.setattr(fake_store.redis, "script_load", refused)
    with pytest.raises(ServiceUnavailable):
        await admit(holds, record(key))


async def test_the_ledger_sums_to_the_balance_change(fake_store: Store) -> None:
    rng = random.Random(5)
    key = await new_key(fake_store, 0)
    holds = Holds(fake_store.redis)
    open_: list[tuple[str, HoldRecord]] = []
    for step in range(120):
        action = rng.random()
        if action < 0.15:
            await fake_store.credit(key, rng.randint(1, 500))
        elif action < 0.6 or not open_:
            rec = record(key, credits=rng.randint(0, 80), tokens=rng.randint(0, 50))
            charge, result = await admit(holds, rec, KeyLimits(max_concurrent=6))
            if isinstance(result, Admitted):
                open_.append((charge, rec))
        else:
            charge, rec = open_.pop(rng.randrange(len(open_)))
            charged = rng.randint(0, rec.credits)
            await holds.settle(
                Charge(rec, charge, charged, rng.randint(0, 60), fields(), route=False)
            )
            if step % 3 == 0:  # a repeated settlement changes nothing
                assert not await holds.settle(Charge(rec, charge, 1, 1, fields(), route=False))
        balance = await fake_store.balance(key)
        assert balance >= 0
        assert await fake_store.held(key) == sum(rec.credits for _, rec in open_)
    ledger = await fake_store.ledger(key)
    assert sum(e.amount for e in ledger) == await fake_store.balance(key)
    assert ledger[-1].balance == await fake_store.balance(key)


# leases


async def test_renew_extends_the_lease_and_records_progress(fake_store: Store) -> None:
    key = await new_key(fake_store)
    holds = Holds(fake_store.redis)
    rec = record(key, lease=1)
    charge, _ = await admit(holds, rec)
    renewed = dataclasses.replace(rec, lease_until=rec.lease_until + 60, output_tokens=12)
    await holds.renew([(charge, renewed)])
    assert await holds_of(fake_store, key) == {charge: renewed.encode()}
    score = await fake_store.redis.zscore(schema.LEASES, f"{key} {charge}")
    assert score == pytest.approx(renewed.lease_until)
    assert await fake_store.held(key) == rec.credits  # renewal holds nothing more


async def test_renew_never_resurrects_a_settled_hold(fake_store: Store) -> None:
    key = await new_key(fake_store)
    holds = Holds(fake_store.redis)
    rec = record(key, lease=-1)
    charge, _ = await admit(holds, rec)
    await holds.settle(Charge(rec, charge, 5, 5, fields(), route=False))
    await holds.renew([(charge, rec)])
    assert await holds_of(fake_store, key) == {}
    assert await fake_store.held(key) == 0
    # Its lease may be listed again, without a record: the reaper forgets it.
    assert await holds.expired(time.time()) == [(key, charge, None)]
    await holds.forget_lease(key, charge)
    assert await holds.expired(time.time()) == []


async def test_expired_lists_expired_leases_with_their_record(fake_store: Store) -> None:
    key = await new_key(fake_store)
    holds = Holds(fake_store.redis)
    old = record(key, lease=-5)
    gone = record(key, lease=-2)
    live = record(key, lease=60)
    old_charge, _ = await admit(holds, old)
    gone_charge, _ = await admit(holds, gone)
    await admit(holds, live)
    await fake_store.redis.hdel(schema.holds(key), gone_charge)
    assert await holds.expired(time.time()) == [
        (key, old_charge, old),
        (key, gone_charge, None),
    ]
    assert await holds.expired(time.time(), limit=1) == [(key, old_charge, old)]
    assert await holds.expired(time.time() - 10) == []


async def test_a_settled_request_stays_counted_in_its_window(fake_store: Store) -> None:
    key = await new_key(fake_store)
    holds = Holds(fake_store.redis)
    limits, route = KeyLimits(rpm=1), KeyLimits(rpm=1)
    rec = record(key, credits=10)
    charge, ok = await admit(holds, rec, limits, route=route)
    assert isinstance(ok, Admitted)
    assert await holds.settle(Charge(rec, charge, 5, 20, fields(), route=True))
    window = window_of(rec.started_at)
    assert await counter(fake_store, schema.requests_window(key, window)) == 1
    assert await counter(fake_store, schema.requests_window(ROUTE, window)) == 1
    _, again = await admit(holds, record(key, credits=10), route=KeyLimits(rpm=1))
    refused(again, "requests")


async def test_a_window_counter_expires_from_its_first_request_on(fake_store: Store) -> None:
    key = await new_key(fake_store)
    holds = Holds(fake_store.redis)
    rec = record(key, credits=1, tokens=50)
    window = window_of(rec.started_at)
    names = [schema.requests_window(key, window), schema.tokens_window(key, window)]
    await admit(holds, rec)
    for name in names:
        assert 0 < await fake_store.redis.ttl(name) <= 2 * holds_module.WINDOW_SECONDS
        await fake_store.redis.expire(name, 30)
    # Later requests of the window count in it without putting its expiry off.
    await admit(holds, record(key, credits=1, tokens=5, started_at=rec.started_at))
    assert await counter(fake_store, names[0]) == 2
    assert await counter(fake_store, names[1]) == 55
    for name in names:
        assert 0 < await fake_store.redis.ttl(name) <= 30


def test_spend_counts_change_day_and_month_at_utc_midnight() -> None:
    last_second = calendar.timegm((2026, 1, 31, 23, 59, 59))
    assert holds_module._spend_keys("k", last_second + 0.999) == [
        schema.spend_day("k", "20260131"),
        schema.spend_month("k", "202601"),
    ]
    assert holds_module._spend_keys("k", last_second + 1) == [
        schema.spend_day("k", "20260201"),
        schema.spend_month("k", "202602"),
    ]


async def test_an_admission_sent_twice_holds_once(fake_store: Store) -> None:
    """Its first answer lost on a broken connection, an admission is sent again: the
    charge id's hold is found, answered as before, and nothing more is held or counted."""
    holds = Holds(fake_store.redis)
    key, _ = await fake_store.create_key("k", balance=1_000)
    limits, now = KeyLimits(rpm=10), time.time()
    first = await holds.admit("c1", record(key.id, started_at=now), limits, True, limits)
    again = await holds.admit("c1", record(key.id, started_at=now), limits, True, limits)
    assert isinstance(first, Admitted) and again == first
    assert await fake_store.held(key.id) == 100
    window = window_of(now)
    for account in (key.id, ROUTE):
        assert await fake_store.redis.hlen(schema.holds(account)) == 1  # type: ignore[misc]
        assert await fake_store.redis.get(schema.requests_window(account, window)) == "1"


# float_text


def test_float_text_is_repr() -> None:
    """``float_text`` is ``repr``'s text (hold records, lease scores and ledger entries
    keep their bytes): pinned over times, every magnitude it takes orjson's writer for,
    and the values it leaves to ``repr``. Fails if orjson's float writer ever changes."""
    rng = random.Random(21)
    samples = [rng.uniform(1e9, 1e10) for _ in range(100_000)]
    samples += [rng.uniform(0, 1e6) for _ in range(20_000)]
    for exponent in range(-4, 309):
        samples += [rng.uniform(1, 10) * 10.0**exponent for _ in range(200)]
    samples += [struct.unpack("d", rng.randbytes(8))[0] for _ in range(50_000)]
    edges = [0.0, -0.0, 1e-4, 1e-5, 9.99e-5, 5e-324, 1.0, 30.0, 1e16, 1e22, 1.5e300]
    edges += [1700000000.0, 1700000000.5, -1.5, sys.float_info.max, math.inf, -math.inf]
    for x in [*samples, *edges, math.nan]:
        assert holds_module.float_text(x) == repr(x), x


def test_the_cached_key_lists_are_the_schemas() -> None:
    """The scripts' KEYS, made once per account and minute (``_admit_keys``...): the
    schema's names, in the order the scripts read them."""
    at = calendar.timegm((2026, 1, 31, 23, 59, 59)) + 0.5
    window, day, hour = window_of(at), int(at // 86400), holds_module.aggregate_hour(at)
    assert holds_module._admit_keys("k", window, day) == (
        schema.balance("k"),
        schema.holds("k"),
        schema.held("k"),
        schema.requests_window("k", window),
        schema.tokens_window("k", window),
        *holds_module._spend_keys("k", at),
    )
    member = [schema.member("t", "k", name) for name in ("holds", "held")]
    member += [schema.member("t", "k", f"{name}:{window}") for name in ("rpm", "tpm")]
    member_spend = [
        schema.member("t", "k", name) for name in ("spend:d:20260131", "spend:m:202601")
    ]
    assert holds_module._admit_team_keys("t", "k", window, day) == (
        *holds_module._admit_keys("t", window, day),
        *member,
        *member_spend,
    )
    head, tail = holds_module._settle_keys("k", window, hour, day)
    assert [*head, "marker", *tail] == [
        schema.balance("k"),
        schema.holds("k"),
        schema.held("k"),
        schema.ledger("k"),
        "marker",
        schema.tokens_window("k", window),
        *holds_module._spend_keys("k", at),
        schema.aggregate_hour("k", "2026013123"),
        schema.aggregate_day("k", "20260131"),
    ]
    team_head, team_tail = holds_module._settle_team_keys("t", "k", window, hour, day, False)
    expected = [
        *holds_module._settle_keys("t", window, hour, day)[1][:3],
        schema.member_aggregate_hour("t", "k", "2026013123"),
        schema.member_aggregate_day("t", "k", "20260131"),
        member[0],
        member[3],
    ]
    assert team_head == holds_module._settle_keys("t", window, hour, day)[0]
    assert list(team_tail) == expected
    _, budgeted = holds_module._settle_team_keys("t", "k", window, hour, day, True)
    assert list(budgeted) == [*expected, member[1], *member_spend]


# The scripts' commands: packed for the pipeliner from runs made once per account and
# minute (``resp.Run``), as they are for Redis Cluster's client. Both the same bytes.

TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)  # 4-byte UTF-8 too
AMOUNT = st.integers(min_value=0, max_value=10**15)
LIMITS = st.builds(KeyLimits, AMOUNT, AMOUNT, AMOUNT, AMOUNT, AMOUNT)


@st.composite
def hold_records(draw: st.DrawFn) -> HoldRecord:
    started = draw(st.floats(min_value=1e9, max_value=4e9))
    return HoldRecord(
        credits=draw(AMOUNT),
        tokens=draw(AMOUNT),
        lease_until=started + draw(st.floats(min_value=0, max_value=1e5)),
        request_id=draw(TEXT),
        key_id=draw(TEXT),
        agent=draw(TEXT),
        backend=draw(TEXT),
        started_at=started,
        input_tokens=draw(AMOUNT),
        progress_credits=draw(AMOUNT),
        team=draw(st.just("") | TEXT),
        key_budget=draw(st.booleans()),
    )


def packed_both_ways(step: Any) -> None:
    """``step(holds)`` gives the same bytes from the pipeliner's ``Holds`` (packed in
    runs) as hiredis packing what Redis Cluster's ``Holds`` sends."""
    redis = aioredis.Redis()
    piped, clustered = step(Holds(redis)), step(Holds(redis, cluster=True))
    assert isinstance(piped, list) and isinstance(clustered, list)
    assert len(piped) == len(clustered)
    for sent, whole in zip(piped, clustered, strict=True):
        assert isinstance(whole, tuple)
        assert sent == (whole if isinstance(sent, tuple) else sent)
        assert pipelining._pack([sent]) == hiredis.pack_command(whole)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(hold_records(), TEXT, LIMITS, LIMITS, st.booleans(), TEXT)
def test_admission_commands_are_packed_as_hiredis_packs_them(
    rec: HoldRecord,
    charge_id: str,
    key_limits: KeyLimits,
    team_limits: KeyLimits,
    check_money: bool,
    account: str,
) -> None:
    packed_both_ways(
        lambda holds: [
            holds._admit_step(account, charge_id, rec, key_limits, check_money),
            holds._admit_team_step(charge_id, rec, key_limits, team_limits, check_money),
            holds._lease_add(account, charge_id, holds_module.float_text(rec.lease_until)),
            holds._lease_remove(account, charge_id),
        ]
    )
    # With the lease's text given (as ``Holds.admit`` gives it, for its ZADD too): the same.
    holds, lease = Holds(aioredis.Redis()), holds_module.float_text(rec.lease_until)
    assert holds._admit_step(account, charge_id, rec, key_limits, check_money, lease) == (
        holds._admit_step(account, charge_id, rec, key_limits, check_money)
    )
    assert holds._admit_team_step(
        charge_id, rec, key_limits, team_limits, check_money, lease
    ) == holds._admit_team_step(charge_id, rec, key_limits, team_limits, check_money)
    assert rec.encode(lease) == rec.encode()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    hold_records(),
    TEXT,
    AMOUNT,
    AMOUNT,
    st.dictionaries(TEXT, TEXT, max_size=14),
    st.booleans(),
    st.booleans(),
)
def test_settlement_commands_are_packed_as_hiredis_packs_them(
    rec: HoldRecord,
    charge_id: str,
    credits: int,
    tokens: int,
    ledger: dict[str, str],
    route: bool,
    failed: bool,
) -> None:
    for cost in [(credits, tokens), (0, 0), (credits, 0), (0, tokens)]:
        charge = Charge(rec, charge_id, *cost, ledger, route=route, failed=failed)
        packed_both_ways(lambda holds, charge=charge: holds._settlement(charge)[0])


LEDGER_NAMES = st.sampled_from(
    ["kind", "agent", "key_id", "input_tokens", "output_tokens", "reasoning_tokens"]
)
LEDGER_VALUES = st.one_of(TEXT, st.integers(min_value=0, max_value=10**6).map(str))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    hold_records(),
    st.dictionaries(st.one_of(LEDGER_NAMES, TEXT), LEDGER_VALUES, max_size=14),
    st.sampled_from(["", "team_1"]),
    st.booleans(),
)
def test_flat_ledger_fields_settle_as_the_dict_of_them(
    rec: HoldRecord, ledger: dict[str, str], team: str, failed: bool
) -> None:
    """``Charge.fields`` flat (name, value...) sends the same settlement, byte for byte,
    as the dict of the same fields (in a team too, its ``key_id`` set as a dict's item
    assignment sets it), and counts the same gateway totals."""
    rec = dataclasses.replace(rec, team=team)
    flat = list(chain.from_iterable(ledger.items()))
    sent, counted = [], []
    for fields in (ledger, flat):
        holds = Holds(aioredis.Redis())
        commands, settled = holds._settlement(
            Charge(rec, "c1", 5, 7, fields, route=True, failed=failed)
        )
        sent.append(commands)
        assert settled([[1, 0], 0, 0])
        counted.append(holds.totals.pending())
    assert sent[0] == sent[1]
    assert counted[0] == counted[1]
    assert flat == list(chain.from_iterable(ledger.items()))  # not changed in place


def test_the_ledger_argument_of_flat_fields_is_the_same_array() -> None:
    assert holds_module.ledger_argument(["a", "1", "b", "é"]) == '["a","1","b","é"]'.encode()
    assert holds_module.ledger_argument([]) == b"[]"


def test_hold_record_takes_the_fields_of_the_class_by_keyword_only() -> None:
    """``holds.hold_record``: the class's fields, in its order, with its defaults, each
    by keyword only; a field added to ``HoldRecord`` must be added there too."""
    made = inspect.signature(holds_module.hold_record).parameters
    assert [(p.name, p.default) for p in made.values()] == [
        (f.name, inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default)
        for f in dataclasses.fields(HoldRecord)
    ]
    assert {p.kind for p in made.values()} == {inspect.Parameter.KEYWORD_ONLY}


def test_make_charge_takes_the_fields_of_the_class_by_keyword_only() -> None:
    """``holds.make_charge``: ``Charge``'s fields, in its order, with its defaults, each by
    keyword only, making the charge the class makes."""
    made = inspect.signature(holds_module.make_charge).parameters
    assert [(p.name, p.default) for p in made.values()] == [
        (f.name, inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default)
        for f in dataclasses.fields(Charge)
    ]
    assert {p.kind for p in made.values()} == {inspect.Parameter.KEYWORD_ONLY}
    rec = HoldRecord(5, 9, 1.5, "req_1", "key_1", "echo", "", 1.0)
    fields = {"record": rec, "charge_id": "c1", "credits": 3, "tokens": 4, "fields": ["a", "1"]}
    for more in ({"route": True}, {"route": False, "failed": True}):
        charge = holds_module.make_charge(**fields, **more)  # type: ignore[arg-type]
        assert type(charge) is Charge and charge == Charge(**fields, **more)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(hold_records(), TEXT, st.booleans())
def test_hold_record_makes_the_record_the_class_makes(
    rec: HoldRecord, team: str, key_budget: bool
) -> None:
    fields = {**dataclasses.asdict(rec), "team": team, "key_budget": key_budget}
    made = holds_module.hold_record(**fields)
    assert type(made) is HoldRecord and made == HoldRecord(**fields)
    assert made.encode() == HoldRecord(**fields).encode()
    least = {name: fields[name] for name in list(fields)[:8]}  # the rest by default
    assert holds_module.hold_record(**least) == HoldRecord(**least)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    st.floats(min_value=0, max_value=1e11, allow_nan=False)
    | st.integers(min_value=0, max_value=10**6).map(lambda n: n * 86400.0)
    | st.integers(min_value=1, max_value=10**6).map(lambda n: math.nextafter(n * 86400.0, 0))
)
def test_the_day_from_the_window_or_the_hour_is_the_day_of_the_time(at: float) -> None:
    """Admission takes the UTC day from the window (``WINDOWS_A_DAY``) and settlement from
    the hour (``_hour_and_day``) instead of dividing the time again: the same day, the
    same texts, at a day's edges too."""
    day = int(at // 86400)
    assert holds_module.window_of(at) // holds_module.WINDOWS_A_DAY == day
    assert holds_module._hour_and_day(int(at // 3600)) == (
        holds_module.aggregate_hour(at),
        day,
        holds_module._day_and_month(day)[0],
    )
