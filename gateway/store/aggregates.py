"""Reading the aggregates: credits, requests, errors and tokens by hour and by day, for
one key, one team or the whole gateway, by agent, and the gateway's top keys.

Settlement writes them (``lua/settle.lua`` for a key's, exact and atomic with its
ledger entry; ``gateway_totals`` for the gateway's, best-effort) and credits
(``lua/post_entry.lua``) count in a key's day as ``credited`` and ``debited``. A key in
a team is counted by ``lua/settle_team.lua`` in hashes of its own kept under the team's
hash tag (``schema.member_aggregate_*``: one script touches one slot on Redis Cluster),
and only there, so a team member's request costs what a lone key's does. A key's
history lives in its own hashes and in those it has in every team it has been in
(``schema.key_teams``): ``read_key`` sums them, after a move too. A team's is the sum
of every key it has had (``schema.team_keys_ever``) and of its own hashes (credits,
and what was settled before keys were counted apart): ``read_team``. Reading is one
pipelined round trip of a hash per bucket and place, whatever the ledgers hold: a
gateway with a million ledger entries reads as fast as one with ten.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, cast

from redis import asyncio as aioredis

from gateway.store import schema
from gateway.store.records import ApiKey
from gateway.store.store import guard

Period = Literal["hour", "day"]
PERIODS: tuple[Period, ...] = ("hour", "day")
MAX_BUCKETS: dict[Period, int] = {"hour": 192, "day": 400}  # what the retention keeps
TOP_KEYS = 10
TOP_CACHE_SECONDS = 60
TOP_CACHE_FROM = 5000  # members of the days' sets, summed

METRICS = (
    "credits",
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "credited",
    "debited",
)


@dataclass(frozen=True, slots=True)
class Totals:
    """Counts over some time: credits charged, requests settled, errors (requests that did
    not complete), tokens by kind; for a key also credits added and removed by hand."""

    credits: int = 0
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    credited: int = 0
    debited: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(*(getattr(self, m) + getattr(other, m) for m in METRICS))

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_json(self) -> dict[str, int]:
        return {m: getattr(self, m) for m in METRICS}


@dataclass(frozen=True, slots=True)
class Bucket:
    """One hour or day: its UTC start (UNIX seconds and ``YYYY-MM-DD[THH]``) and totals."""

    at: int
    label: str
    totals: Totals

    def to_json(self) -> dict[str, object]:
        return {"at": self.at, "start": self.label, **self.totals.to_json()}


@dataclass(frozen=True, slots=True)
class Aggregates:
    """The last ``len(buckets)`` hours or days, oldest first, of a key (``scope`` its id)
    or of the gateway (``scope`` ``"gateway"``), their sum, by agent, and (the gateway's)
    the keys that spent most."""

    scope: str
    period: Period
    buckets: tuple[Bucket, ...]
    total: Totals
    by_agent: tuple[tuple[str, Totals], ...]  # most credits first
    top_keys: tuple[tuple[str, int], ...] = ()  # (key id, credits), most first

    def to_json(self) -> dict[str, object]:
        return {
            "scope": self.scope,
            "period": self.period,
            "buckets": [b.to_json() for b in self.buckets],
            "total": self.total.to_json(),
            "by_agent": [{"agent": a, **t.to_json()} for a, t in self.by_agent],
            "top_keys": [{"id": k, "credits": c} for k, c in self.top_keys],
        }


def bucket_starts(period: Period, count: int, now: float) -> list[int]:
    """The UTC starts of the last ``count`` hours or days up to ``now``, oldest first."""
    size = 3600 if period == "hour" else 86400
    last = int(now // size) * size
    return [last - size * i for i in range(count - 1, -1, -1)]


def bucket_name(period: Period, at: int) -> str:
    """The bucket's part of a key name: ``YYYYMMDDHH`` or ``YYYYMMDD``."""
    return time.strftime("%Y%m%d%H" if period == "hour" else "%Y%m%d", time.gmtime(at))


def _label(period: Period, at: int) -> str:
    return time.strftime("%Y-%m-%dT%H:00Z" if period == "hour" else "%Y-%m-%d", time.gmtime(at))


def parse(fields: dict[str, str]) -> tuple[Totals, dict[str, Totals]]:
    """A bucket's hash: its totals, and each agent's. An hour has its totals as fields
    ``<metric>``; a day has each agent's, ``<metric>|<agent>``, and they add up to its
    totals (with ``credited`` and ``debited``, which are no agent's)."""
    total: dict[str, int] = {}
    agents: dict[str, dict[str, int]] = {}
    for name, value in fields.items():
        metric, bar, agent = name.partition("|")
        if metric not in METRICS:
            continue
        try:
            n = int(value)
        except ValueError:
            continue
        if bar:
            mine = agents.setdefault(agent, {})
            mine[metric] = mine.get(metric, 0) + n
        total[metric] = total.get(metric, 0) + n
    return Totals(**total), {a: Totals(**counts) for a, counts in agents.items()}


async def read(
    redis: aioredis.Redis,
    key_id: str | None,
    period: Period,
    count: int,
    *,
    now: float | None = None,
    top: int = TOP_KEYS,
) -> Aggregates:
    """The last ``count`` buckets of a key (or, with ``key_id`` None, of the gateway)."""
    if key_id is None:
        of = schema.global_hour if period == "hour" else schema.global_day
        return await _read(redis, None, [of], period, count, now=now, top=top)
    own = schema.aggregate_hour if period == "hour" else schema.aggregate_day
    return await _read(redis, key_id, [partial(own, key_id)], period, count, now=now, top=0)


async def read_key(
    redis: aioredis.Redis,
    key: ApiKey,
    period: Period,
    count: int,
    *,
    now: float | None = None,
) -> Aggregates:
    """The last ``count`` buckets of a key: its own hashes (spent on its own balance),
    and its hashes in each team it is or has been in (``schema.key_teams``)."""
    async with guard():
        teams = cast(set[str], await redis.smembers(schema.key_teams(key.id)))
    if key.team:
        teams.add(key.team)  # a key put in its team before the history was kept
    own = schema.aggregate_hour if period == "hour" else schema.aggregate_day
    member = schema.member_aggregate_hour if period == "hour" else schema.member_aggregate_day
    places: list[Callable[[str], str]] = [partial(own, key.id)]
    places += [partial(member, team, key.id) for team in sorted(teams)]
    return await _read(redis, key.id, places, period, count, now=now, top=0)


async def read_team(
    redis: aioredis.Redis,
    team_id: str,
    period: Period,
    count: int,
    *,
    now: float | None = None,
) -> Aggregates:
    """The last ``count`` buckets of a team: the sum of its keys' (every key it has had,
    ``schema.team_keys_ever``), and its own hashes (credits added and removed by hand,
    and what was settled before its keys were counted apart)."""
    async with guard():
        keys = cast(
            set[str],
            await redis.sunion([schema.team_members(team_id), schema.team_keys_ever(team_id)]),
        )
    own = schema.aggregate_hour if period == "hour" else schema.aggregate_day
    member = schema.member_aggregate_hour if period == "hour" else schema.member_aggregate_day
    places: list[Callable[[str], str]] = [partial(own, team_id)]
    places += [partial(member, team_id, key_id) for key_id in sorted(keys)]
    return await _read(redis, team_id, places, period, count, now=now, top=0)


async def _read(
    redis: aioredis.Redis,
    scope: str | None,
    places: Sequence[Callable[[str], str]],
    period: Period,
    count: int,
    *,
    now: float | None,
    top: int,
) -> Aggregates:
    """Each bucket summed over ``places`` (each gives a hash's name from the bucket's)."""
    now = time.time() if now is None else now
    starts = bucket_starts(period, count, now)
    names = [place(bucket_name(period, at)) for at in starts for place in places]
    async with guard():
        pipe: Any = redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(name)
        found = cast(list[dict[str, str]], await pipe.execute())
        width = len(places)
        hashes = [_merged(found[i : i + width]) for i in range(0, len(found), width)]
        ranked: list[tuple[str, float]] = []
        if scope is None and top:
            days = bucket_starts("day", count if period == "day" else count // 24 + 2, now)
            zsets = [schema.global_top_keys(bucket_name("day", at)) for at in days]
            ranked = await _top(redis, zsets, top)
    buckets: list[Bucket] = []
    total = Totals()
    agents: dict[str, Totals] = {}
    for at, fields in zip(starts, hashes, strict=True):
        totals, by_agent = parse(fields)
        buckets.append(Bucket(at, _label(period, at), totals))
        total += totals
        for agent, t in by_agent.items():
            agents[agent] = agents.get(agent, Totals()) + t
    order = sorted(agents.items(), key=lambda item: (-item[1].credits, -item[1].requests, item[0]))
    top_keys = tuple((k, int(c)) for k, c in sorted(ranked, key=lambda r: (-r[1], r[0]))[:top])
    return Aggregates(
        "gateway" if scope is None else scope,
        period,
        tuple(buckets),
        total,
        tuple(order),
        top_keys,
    )


def _merged(hashes: list[dict[str, str]]) -> dict[str, str]:
    """One bucket's hashes (a key's own and its teams') as one, each field summed."""
    if len(hashes) == 1:
        return hashes[0]
    total: dict[str, int] = {}
    for fields in hashes:
        for name, value in fields.items():
            try:
                total[name] = total.get(name, 0) + int(value)
            except ValueError:
                continue
    return {name: str(n) for name, n in total.items()}


async def _top(redis: aioredis.Redis, zsets: list[str], top: int) -> list[tuple[str, float]]:
    """The ``top`` members of the union of ``zsets``. Beyond ``TOP_CACHE_FROM`` members
    Redis sums them into a key kept ``TOP_CACHE_SECONDS`` (then the top keys may be that
    stale), of which only ``top`` come back, however many keys spent."""
    pipe: Any = redis.pipeline(transaction=False)
    for name in zsets:
        pipe.zcard(name)
    if sum(await pipe.execute()) < TOP_CACHE_FROM:
        ranked = cast(list[tuple[str, float]], await redis.zunion(zsets, withscores=True))
        return sorted(ranked, key=lambda r: (-r[1], r[0]))[:top]
    union = schema.global_top_union(zsets[0], len(zsets), top)
    if not await redis.exists(union):
        await redis.zunionstore(union, zsets)
        await redis.expire(union, TOP_CACHE_SECONDS)
    return cast(list[tuple[str, float]], await redis.zrevrange(union, 0, top - 1, withscores=True))


def month_to_date(aggregates: Aggregates, now: float) -> Totals:
    """The sum of a daily ``aggregates``' buckets in the UTC month of ``now``."""
    month = time.strftime("%Y-%m", time.gmtime(now))
    total = Totals()
    for bucket in aggregates.buckets:
        if bucket.label.startswith(month):
            total += bucket.totals
    return total
