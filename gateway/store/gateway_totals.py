"""The gateway-wide aggregates: what this process settled, summed in memory and added to
Redis about once a second, for the overview and ``GET /admin/aggregates``.

Why not in the settlement script, as a key's are: on Redis Cluster one script touches
one slot, and the gateway's totals cannot live in every key's slot. A second script per
settlement would double the Redis work of the hot path. So each process counts a
request here once its settlement reports it settled now (so never twice, even when the
reaper and the request's own process race), and ``flush`` adds the sums with a few
``HINCRBY`` per bucket, not per request. Best-effort by design: what a process had
not flushed when it died, or a flush that failed, is missing from the gateway's view;
each key's aggregates (exact, in its settlement script) and ledger are the authority.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping
from typing import Any, cast

from redis import asyncio as aioredis

from gateway.errors import ServiceUnavailable
from gateway.store import schema
from gateway.store.store import guard

log = logging.getLogger("gateway.store")

FLUSH_SECONDS = 1.0
TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


class GatewayTotals:
    def __init__(self, redis: aioredis.Redis, hour_ttl: int, day_ttl: int) -> None:
        self._redis = redis
        self._ttl = {"hour": hour_ttl, "day": day_ttl}
        # (hour, day) -> agent -> its counts in ``_METRICS``' order: one list per agent
        # and bucket, added to per request; the hour's totals (the sum over agents) and
        # the day's fields (``<metric>|<agent>``) are made from them by a flush.
        self._counts: dict[tuple[str, str], dict[str, list[int]]] = {}
        self._spenders: dict[str, dict[str, int]] = {}  # day's top-key set -> key -> credits
        # The bucket of the hour and day counted last (hour, day, its agents' counts and
        # the day's spenders): most requests count in the same one, so it is looked up
        # once an hour, not per request. Dropped by a flush.
        self._last: tuple[str, str, dict[str, list[int]], dict[str, int]] | None = None

    def add(
        self,
        key_id: str,
        agent: str,
        credits: int,
        failed: bool,
        fields: Mapping[str, str] | list[str],
        hour: str,
        day: str,
    ) -> None:
        """Count one request settled now: its hour's totals and its day's, by agent.
        ``fields``: its ledger entry's (``holds.Charge.fields``), for the token counts."""
        last = self._last
        if last is None or last[0] != hour or last[1] != day:
            last = self._last = (
                hour,
                day,
                self._counts.setdefault((hour, day), {}),
                self._spenders.setdefault(schema.global_top_keys(day), {}),
            )
        agents, spent = last[2], last[3]
        counts = agents.get(agent)
        if counts is None:
            counts = agents[agent] = [0] * len(_METRICS)
        counts[0] += 1
        if failed:
            counts[1] += 1
        if credits:
            counts[2] += credits
            spent[key_id] = spent.get(key_id, 0) + credits
        index = 3
        for value in ledger_tokens(fields):
            if value != "0" and value.isdigit():
                counts[index] += int(value)
            index += 1

    def pending(self) -> tuple[dict[tuple[str, str], dict[str, int]], dict[str, dict[str, int]]]:
        """What a flush would add now: each hash's fields, by (TTL kind, hash name), and
        each day's top-key set's credits by key. A metric none of the requests counted
        (a zero) is no field: a failed request counts an error, a cost its credits, a
        token count above zero its tokens."""
        sums: dict[tuple[str, str], dict[str, int]] = {}
        for (hour, day), agents in self._counts.items():
            hours = sums.setdefault(("hour", schema.global_hour(hour)), {})
            days = sums.setdefault(("day", schema.global_day(day)), {})
            for agent, counts in agents.items():
                of_agent = _agent_fields(agent)
                for name, n in zip(_METRICS, counts, strict=True):
                    if n:
                        hours[name] = hours.get(name, 0) + n
                        field = of_agent[name]
                        days[field] = days.get(field, 0) + n
        return sums, self._spenders

    async def flush(self) -> None:
        """Add what was counted since the last flush to Redis (once: a failed flush is
        dropped, since Redis may have applied part of it)."""
        if not self._counts and not self._spenders:
            return
        counts, spenders = self.pending()
        self._counts, self._spenders, self._last = {}, {}, None
        pipe: Any = self._redis.pipeline(transaction=False)
        for (kind, name), fields in counts.items():
            for field, n in fields.items():
                pipe.hincrby(name, field, n)
            pipe.expire(name, self._ttl[kind])
        for name, spent in spenders.items():
            if not spent:  # that day's bucket, made by a request that cost nothing
                continue
            for key_id, credits in spent.items():
                pipe.zincrby(name, credits, key_id)
            pipe.expire(name, self._ttl["day"])
        try:
            async with guard():
                await pipe.execute()
        except ServiceUnavailable:
            requests = sum(f.get("requests", 0) for (k, _), f in counts.items() if k == "hour")
            log.warning(
                "the gateway-wide aggregates missed %d requests (Redis unavailable); each "
                "key's own are complete",
                requests,
            )

    async def run(self) -> None:
        """Flush every ``FLUSH_SECONDS``, until cancelled (then once more)."""
        try:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                await self.flush()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush())


def ledger_tokens(fields: Mapping[str, str] | list[str]) -> list[str]:
    """The token counts of a ledger entry's ``fields`` (``holds.Charge.fields``: a dict,
    or flat: name, value...), as text in ``TOKEN_FIELDS``' order, "0" for one absent.

    Flat fields in ``settlement.ledger_fields``' order have the five names at positions
    14, 16... 22, each count after its name: read there, without a dict made of them."""
    if type(fields) is list:
        if len(fields) >= 24 and fields[14:24:2] == _TOKEN_NAMES:
            return fields[15:24:2]
        fields = dict(zip(fields[::2], fields[1::2], strict=False))  # a name left alone: none
    return [cast(Mapping[str, str], fields).get(name, "0") for name in TOKEN_FIELDS]


_TOKEN_NAMES = list(TOKEN_FIELDS)
# What ``add`` counts per agent, in the order of its counts: the requests, the errors,
# the credits, then the token counts.
_METRICS = ("requests", "errors", "credits", *TOKEN_FIELDS)


@functools.lru_cache(maxsize=256)
def _agent_fields(agent: str) -> dict[str, str]:
    """The day hash's field of each metric of ``agent``: ``<metric>|<agent>``."""
    return {name: f"{name}|{agent}" for name in _METRICS}
