"""The cost of metering alone: one admission and one settlement against the real Redis.

Admission is on the request's critical path (one round trip before the
upstream is called); settlement runs after the answer, off it. Both are timed
here with the gateway's own code, one request at a time.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass

from redis import asyncio as aioredis

from gateway.store import Store
from gateway.store.holds import HoldRecord, Holds
from gateway.store.records import KeyLimits


@dataclass(frozen=True)
class MeteringCost:
    admit_p50_ms: float
    admit_p99_ms: float
    settle_p50_ms: float
    settle_p99_ms: float
    rounds: int


def measure(redis_url: str, rounds: int = 2000) -> MeteringCost:
    return asyncio.run(_measure(redis_url, rounds))


async def _measure(redis_url: str, rounds: int) -> MeteringCost:
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = Store(redis)
    holds = Holds(redis)
    key, _ = await store.create_key("bench-metering", balance=10**15, limits=KeyLimits(rpm=10**9))
    admits: list[float] = []
    settles: list[float] = []
    for i in range(rounds):
        now = time.time()
        record = HoldRecord(1000, 500, now + 30, f"bench-{i}", key.id, "bench", "mock", now)
        charge_id = uuid.uuid4().hex
        started = time.perf_counter()
        await holds.admit(charge_id, record, key.limits, True, None)
        admitted = time.perf_counter()
        fields = {"kind": "usage", "request_id": record.request_id, "agent": "bench"}
        await holds.settle(record, charge_id, 42, 300, fields, route=False)
        settled = time.perf_counter()
        admits.append((admitted - started) * 1000)
        settles.append((settled - admitted) * 1000)
    await redis.aclose()
    return MeteringCost(
        _quantile(admits, 0.5),
        _quantile(admits, 0.99),
        _quantile(settles, 0.5),
        _quantile(settles, 0.99),
        rounds,
    )


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1] if q < 1 else max(values)


def line(cost: MeteringCost) -> str:
    return (
        f"metering alone ({cost.rounds} requests, one at a time): admission p50 "
        f"{cost.admit_p50_ms:.3f} ms / p99 {cost.admit_p99_ms:.3f} ms on the critical path; "
        f"settlement p50 {cost.settle_p50_ms:.3f} ms / p99 {cost.settle_p99_ms:.3f} ms after it"
    )
