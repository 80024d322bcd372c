"""The cost of metering alone: one admission and one settlement against the real Redis,
for a key without a team and for a key in a team (``admit_team.lua``, ``settle_team.lua``).

Admission is on the request's critical path (one round trip before the
upstream is called); settlement runs after the answer, off it. Both are timed
here with the gateway's own code, one request at a time, alternating the two kinds
of key in blocks so that both see the same machine. Redis's own CPU per request
(admission and settlement scripts, from ``INFO commandstats``) is reported too: on a
shared machine it is the steadier of the two figures.

``python -m bench.metering`` runs it alone against ``GATEWAY_TEST_REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import Any

from redis import asyncio as aioredis

from gateway.store import ApiKey, Store
from gateway.store.holds import Charge, HoldRecord, Holds
from gateway.store.records import KeyLimits
from gateway.store.teams import Teams

BLOCK = 100  # requests of one kind in a row


@dataclass(frozen=True)
class MeteringCost:
    admit_p50_ms: float
    admit_p99_ms: float
    settle_p50_ms: float
    settle_p99_ms: float
    rounds: int
    # The same for a key in a team, and Redis's CPU per request (admission + settlement).
    team_admit_p50_ms: float = 0.0
    team_admit_p99_ms: float = 0.0
    team_settle_p50_ms: float = 0.0
    team_settle_p99_ms: float = 0.0
    admit_redis_us: float = 0.0
    settle_redis_us: float = 0.0
    team_admit_redis_us: float = 0.0
    team_settle_redis_us: float = 0.0


def measure(redis_url: str, rounds: int = 2000) -> MeteringCost:
    return asyncio.run(_measure(redis_url, rounds))


@dataclass
class _Samples:
    admits: list[float]
    settles: list[float]
    admit_us: float = 0.0  # Redis's CPU in admissions (scripts and lease ZADD)
    settle_us: float = 0.0


async def _measure(redis_url: str, rounds: int) -> MeteringCost:
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = Store(redis)
    holds = Holds(redis)
    limits = KeyLimits(rpm=10**9)
    key, _ = await store.create_key("bench-metering", balance=10**15, limits=limits)
    team = await Teams(store).create("bench-team", balance=10**15, limits=limits)
    # The team carries the limits the lone key has; its key none of its own (own caps
    # inside a team's are counted too, only while set).
    member, _ = await store.create_key("bench-member", team=team.id)
    member = await store.get_key(member.id)  # with its team's limits, as auth reads it
    alone, teamed = _Samples([], []), _Samples([], [])
    await _run(holds, key, BLOCK, _Samples([], []))  # warm up both paths and their scripts
    await _run(holds, member, BLOCK, _Samples([], []))
    for _ in range(max(1, rounds // BLOCK)):
        await _run(holds, key, BLOCK, alone)
        await _run(holds, member, BLOCK, teamed)
    await redis.aclose()
    return MeteringCost(
        _quantile(alone.admits, 0.5),
        _quantile(alone.admits, 0.99),
        _quantile(alone.settles, 0.5),
        _quantile(alone.settles, 0.99),
        len(alone.admits),
        _quantile(teamed.admits, 0.5),
        _quantile(teamed.admits, 0.99),
        _quantile(teamed.settles, 0.5),
        _quantile(teamed.settles, 0.99),
        alone.admit_us / len(alone.admits),
        alone.settle_us / len(alone.admits),
        teamed.admit_us / len(teamed.admits),
        teamed.settle_us / len(teamed.admits),
    )


async def _run(holds: Holds, key: ApiKey, count: int, samples: _Samples) -> None:
    """``count`` admissions, then their settlements: Redis's CPU of each phase apart."""
    admitted: list[tuple[str, HoldRecord]] = []
    before = await _script_usec(holds.redis)
    for i in range(count):
        now = time.time()
        record = HoldRecord(
            1000,
            500,
            now + 30,
            f"bench-{i}",
            key.id,
            "bench",
            "mock",
            now,
            team=key.team,
            key_budget=bool(key.team) and key.limits.budgeted,
        )
        charge_id = uuid.uuid4().hex
        started = time.perf_counter()
        await holds.admit(charge_id, record, key.limits, True, None, key.team_limits)
        samples.admits.append((time.perf_counter() - started) * 1000)
        admitted.append((charge_id, record))
    middle = await _script_usec(holds.redis)
    for charge_id, record in admitted:
        fields = {"kind": "usage", "request_id": record.request_id, "agent": "bench"}
        started = time.perf_counter()
        await holds.settle(Charge(record, charge_id, 42, 300, fields, route=False))
        samples.settles.append((time.perf_counter() - started) * 1000)
    after = await _script_usec(holds.redis)
    samples.admit_us += middle - before
    samples.settle_us += after - middle


async def _script_usec(redis: aioredis.Redis) -> float:
    """Redis's CPU in scripts and the lease commands so far (µs), from INFO commandstats."""
    stats: dict[str, Any] = await redis.info("commandstats")
    names = ("cmdstat_evalsha", "cmdstat_zadd", "cmdstat_zrem")
    return float(sum(stats[n]["usec"] for n in names if n in stats))


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1] if q < 1 else max(values)


def line(cost: MeteringCost) -> str:
    text = (
        f"metering alone ({cost.rounds} requests, one at a time): admission p50 "
        f"{cost.admit_p50_ms:.3f} ms / p99 {cost.admit_p99_ms:.3f} ms on the critical path; "
        f"settlement p50 {cost.settle_p50_ms:.3f} ms / p99 {cost.settle_p99_ms:.3f} ms after it"
    )
    if not cost.team_admit_p50_ms:
        return text
    alone = cost.admit_redis_us + cost.settle_redis_us
    teamed = cost.team_admit_redis_us + cost.team_settle_redis_us
    return (
        f"{text}\n"
        f"  a key in a team: admission p50 {cost.team_admit_p50_ms:.3f} ms / p99 "
        f"{cost.team_admit_p99_ms:.3f} ms; settlement p50 {cost.team_settle_p50_ms:.3f} ms / "
        f"p99 {cost.team_settle_p99_ms:.3f} ms "
        f"(admission p50 {cost.team_admit_p50_ms / cost.admit_p50_ms - 1:+.1%})\n"
        f"  Redis CPU per request, admission + settlement: {cost.admit_redis_us:.1f} + "
        f"{cost.settle_redis_us:.1f} = {alone:.1f} µs without a team, "
        f"{cost.team_admit_redis_us:.1f} + {cost.team_settle_redis_us:.1f} = {teamed:.1f} µs "
        f"in one ({teamed / alone - 1:+.1%})"
    )


if __name__ == "__main__":
    print(line(measure(os.environ["GATEWAY_TEST_REDIS_URL"], 4000)))
