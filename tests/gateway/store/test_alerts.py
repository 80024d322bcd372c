"""Threshold events on a real Redis: a key's and a team's spend crossing fractions of
their balance and budgets, each event once, again after a top-up."""

from __future__ import annotations

import time
import uuid

from redis import asyncio as aioredis

from gateway.store import Store, schema
from gateway.store.alerts import Alerts, watched
from gateway.store.holds import Charge, HoldRecord, Holds
from gateway.store.records import ApiKey, KeyLimits
from gateway.store.teams import Teams

FRACTIONS = (0.5, 0.8, 1.0)


async def spend(holds: Holds, key: ApiKey, credits: int) -> None:
    now = time.time()
    budget = bool(key.team) and key.limits.budgeted
    record = HoldRecord(credits, 10, now + 30, uuid.uuid4().hex, key.id, "echo", "", now,
                        team=key.team, key_budget=budget)  # fmt: skip
    charge = uuid.uuid4().hex
    await holds.admit(charge, record, key.limits, True, None, key.team_limits)
    await holds.settle(Charge(record, charge, credits, 10, {"kind": "usage"}, route=False))


async def check(alerts: Alerts, key: ApiKey) -> list[tuple[str, str, str, float]]:
    events = []
    for w in watched(key.id, key.team, key.limits, key.team_limits):
        events += await alerts.check(w, key.id, FRACTIONS)
    return [(e.whose, e.account, e.kind, e.fraction) for e in events]


async def test_a_keys_balance_and_budget_fire_once_each(redis_client: aioredis.Redis) -> None:
    store, holds, alerts = Store(redis_client), Holds(redis_client), Alerts(redis_client)
    key, _ = await store.create_key("k", balance=1_000, limits=KeyLimits(daily_budget=500))
    await spend(holds, key, 200)  # 20% of the balance, 40% of the budget
    assert await check(alerts, key) == []
    await spend(holds, key, 250)  # 450 spent: 45% of the balance, 90% of the budget
    assert await check(alerts, key) == [
        ("key", key.id, "daily_budget", 0.5), ("key", key.id, "daily_budget", 0.8)
    ]  # fmt: skip
    await spend(holds, key, 50)  # 500 spent: half the balance, all of the budget
    assert await check(alerts, key) == [
        ("key", key.id, "balance", 0.5), ("key", key.id, "daily_budget", 1.0)
    ]  # fmt: skip
    assert await check(alerts, key) == []  # once each
    events = await alerts.latest()
    assert [e.kind for e in events] == ["daily_budget", "balance", "daily_budget", "daily_budget"]
    assert events[0].value == 500 and events[0].limit == 500 and events[0].key_id == key.id

    await store.credit(key.id, 500)  # balance 1,000 again: its thresholds start over
    reference = await redis_client.get(schema.alert_reference(key.id))
    assert reference is not None and reference.startswith("1000 ")
    key = await store.set_limits(key.id, KeyLimits())  # no budget in the way now
    await spend(holds, key, 500)
    assert ("key", key.id, "balance", 0.5) in await check(alerts, key)


async def test_a_teams_events_and_its_keys_own_budget(redis_client: aioredis.Redis) -> None:
    store, holds, alerts = Store(redis_client), Holds(redis_client), Alerts(redis_client)
    team = await Teams(store).create("t", balance=1_000, limits=KeyLimits(monthly_budget=2_000))
    key, _ = await store.create_key("k", team=team.id, limits=KeyLimits(daily_budget=100))
    key = await store.get_key(key.id)
    await spend(holds, key, 90)
    assert await check(alerts, key) == [
        ("key", key.id, "daily_budget", 0.5), ("key", key.id, "daily_budget", 0.8)
    ]  # fmt: skip
    other, _ = await store.create_key("o", team=team.id)
    other = await store.get_key(other.id)
    await spend(holds, other, 720)  # the team has spent 810 of its 1,000
    assert await check(alerts, other) == [
        ("team", team.id, "balance", 0.5), ("team", team.id, "balance", 0.8)
    ]  # fmt: skip
    await spend(holds, other, 190)  # 1,000: all of its balance, half its monthly budget
    assert await check(alerts, other) == [
        ("team", team.id, "balance", 1.0), ("team", team.id, "monthly_budget", 0.5)
    ]  # fmt: skip
