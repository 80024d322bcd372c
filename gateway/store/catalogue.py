"""The key catalogue: keys found by name or id, sorted, a page at a time, fast with tens
of thousands of keys; and the keys near their limits or budgets.

``Store.create_key`` indexes each key in two sorted sets (by creation time, and by
its lowercased name then id, lexicographically) and in the set of keys with limits.
A page reads only its own rows (one pipelined round trip for records, balances,
holds and today's spend). A search is a substring match that Redis runs over the
name index (``ZSCAN MATCH``) without reading any record. Keys created before the
index existed are added the first time a page sees the counts differ (``reindex``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, cast

from redis import asyncio as aioredis

from gateway.store import schema
from gateway.store.holds import window_of
from gateway.store.records import ApiKey, KeyLimits
from gateway.store.store import guard, text_member

Sort = Literal["newest", "oldest", "name"]
SORTS: tuple[Sort, ...] = ("newest", "oldest", "name")
MAX_PAGE = 200
MAX_MATCHES = 10_000  # a search stops collecting here (and says so)
NEAR = 0.8  # a key is near a limit from this share of it


@dataclass(frozen=True, slots=True)
class KeyRow:
    """A key as a list shows it: its record, balance, credits held, spend today."""

    key: ApiKey
    balance: int
    held: int
    spent_today: int

    def to_json(self) -> dict[str, object]:
        out = self.key.to_json()
        out.update(balance=self.balance, held=self.held, spent_today=self.spent_today)
        return out


@dataclass(frozen=True, slots=True)
class KeyPage:
    rows: tuple[KeyRow, ...]
    total: int  # keys matching, all pages
    offset: int
    limit: int
    query: str
    sort: Sort
    capped: bool = False  # the search stopped at MAX_MATCHES

    def to_json(self) -> dict[str, object]:
        return {
            "keys": [r.to_json() for r in self.rows],
            "total": self.total,
            "offset": self.offset,
            "limit": self.limit,
            "query": self.query,
            "sort": self.sort,
            "capped": self.capped,
        }


@dataclass(frozen=True, slots=True)
class NearLimit:
    """A key at ``NEAR`` of a limit or more: which limit, what it used, the limit."""

    key_id: str
    limit: str  # daily_budget, monthly_budget, rpm, tpm
    used: int
    of: int

    def to_json(self) -> dict[str, object]:
        return {"id": self.key_id, "limit": self.limit, "used": self.used, "of": self.of}


async def reindex(redis: aioredis.Redis) -> int:
    """Index keys that the catalogue lacks (made before it existed); how many it added."""
    async with guard():
        if await redis.zcard(schema.KEYS_BY_CREATED) >= await redis.scard(schema.KEY_INDEX):
            return 0
        added = 0
        async for key_id in redis.sscan_iter(schema.KEY_INDEX, count=1000):
            if await redis.zscore(schema.KEYS_BY_CREATED, key_id) is not None:
                continue
            h = cast(dict[str, str], await redis.hgetall(schema.key_record(key_id)))
            if not h:
                continue
            key = ApiKey.from_hash(h)
            await redis.zadd(schema.KEYS_BY_CREATED, {key.id: key.created_at})
            await redis.zadd(schema.KEYS_BY_TEXT, {text_member(key): 0})
            if key.limits != KeyLimits():
                await redis.sadd(schema.KEYS_LIMITED, key.id)
            added += 1
    return added


def _glob(text: str) -> str:
    """``text`` matched literally inside a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def page(
    redis: aioredis.Redis,
    *,
    query: str = "",
    sort: Sort = "newest",
    offset: int = 0,
    limit: int = 50,
    now: float | None = None,
) -> KeyPage:
    """One page of keys: those whose name or id contains ``query`` (any case), sorted."""
    await reindex(redis)
    limit = max(1, min(limit, MAX_PAGE))
    offset = max(0, offset)
    capped = False
    async with guard():
        if query:
            pattern = f"*{_glob(query.lower())}*"
            found: list[str] = []
            async for member, _ in redis.zscan_iter(schema.KEYS_BY_TEXT, match=pattern, count=5000):
                found.append(str(member))
                if len(found) >= MAX_MATCHES:
                    capped = True
                    break
            found.sort()
            if sort != "name":  # by creation: the matches' times, in one round trip
                ids = [m.rpartition("\0")[2] for m in found]
                pipe: Any = redis.pipeline(transaction=False)
                for key_id in ids:
                    pipe.zscore(schema.KEYS_BY_CREATED, key_id)
                scores = await pipe.execute()
                pairs = sorted(zip(scores, ids, strict=True), key=lambda p: p[0] or 0)
                ordered = [i for _, i in (reversed(pairs) if sort == "newest" else pairs)]
            else:
                ordered = [m.rpartition("\0")[2] for m in found]
            total = len(ordered)
            ids = ordered[offset : offset + limit]
        elif sort == "name":
            total = int(await redis.zcard(schema.KEYS_BY_TEXT))
            members = await redis.zrange(schema.KEYS_BY_TEXT, offset, offset + limit - 1)
            ids = [str(m).rpartition("\0")[2] for m in members]
        else:
            total = int(await redis.zcard(schema.KEYS_BY_CREATED))
            ids = [
                str(i)
                for i in await redis.zrange(
                    schema.KEYS_BY_CREATED, offset, offset + limit - 1, desc=sort == "newest"
                )
            ]
        rows = await _rows(redis, ids, time.time() if now is None else now)
    return KeyPage(tuple(rows), total, offset, limit, query, sort, capped)


async def _rows(redis: aioredis.Redis, ids: list[str], now: float) -> list[KeyRow]:
    day = time.strftime("%Y%m%d", time.gmtime(now))
    pipe: Any = redis.pipeline(transaction=False)
    for key_id in ids:
        pipe.hgetall(schema.key_record(key_id))
        pipe.get(schema.balance(key_id))
        pipe.get(schema.held(key_id))
        pipe.get(schema.spend_day(key_id, day))
    replies = await pipe.execute()
    rows = []
    for i in range(0, len(replies), 4):
        record, balance, held, spent = replies[i : i + 4]
        if record:
            rows.append(KeyRow(ApiKey.from_hash(record), _int(balance), _int(held), _int(spent)))
    return rows


async def near_limits(
    redis: aioredis.Redis, *, now: float | None = None, most: int = 1000
) -> list[NearLimit]:
    """Keys (of at most ``most`` with limits) at ``NEAR`` of a limit or budget or beyond,
    nearest first: budgets by today's and this month's spend (with what is held),
    rpm and tpm by the current minute's counts."""
    now = time.time() if now is None else now
    day, month = time.strftime("%Y%m%d", time.gmtime(now)), time.strftime("%Y%m", time.gmtime(now))
    window = window_of(now)
    async with guard():
        ids = [str(i) for i in await redis.srandmember(schema.KEYS_LIMITED, most) or []]
        pipe: Any = redis.pipeline(transaction=False)
        for key_id in ids:
            pipe.hgetall(schema.key_record(key_id))
            pipe.get(schema.spend_day(key_id, day))
            pipe.get(schema.spend_month(key_id, month))
            pipe.get(schema.held(key_id))
            pipe.get(schema.requests_window(key_id, window))
            pipe.get(schema.tokens_window(key_id, window))
        replies = await pipe.execute()
    found: list[NearLimit] = []
    for i, key_id in enumerate(ids):
        record, today, this_month, held, requests, tokens = replies[i * 6 : i * 6 + 6]
        if not record:
            continue
        key = ApiKey.from_hash(record)
        if key.revoked_at is not None:
            continue
        used = {
            "daily_budget": _int(today) + _int(held),
            "monthly_budget": _int(this_month) + _int(held),
            "rpm": _int(requests),
            "tpm": _int(tokens),
        }
        for name, value in used.items():
            of = getattr(key.limits, name)
            if of and value >= NEAR * of:
                found.append(NearLimit(key_id, name, value, of))
    found.sort(key=lambda n: (-n.used / n.of, n.key_id))
    return found


def _int(value: object) -> int:
    return int(cast(str, value)) if value else 0
