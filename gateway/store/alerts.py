"""Threshold events: when a key's or a team's spend crosses a fraction of its balance
(as last topped up) or of its daily or monthly budget, one event is appended to the
stream ``gw:alerts``, once per fraction and per top-up, day or month whichever process
sees it first (a ``SET NX`` marker decides).

Checked after a settlement, off the request's path (the reaper's settlements of holds
whose process died too); an account's balance reference is set when credits are added
to it (``Store.set_alert_reference``). Delivery to a webhook reads the stream
(``gateway.metering.webhook``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import cast

from redis import asyncio as aioredis

from gateway.store import schema
from gateway.store.records import ApiKey, KeyLimits, Team
from gateway.store.store import guard

ALERTS_MAX_ENTRIES = 100_000  # the stream keeps (about) this many latest events
_DAY = 86_400


@dataclass(frozen=True, slots=True)
class ThresholdEvent:
    """One crossing: ``kind`` is ``balance``, ``daily_budget`` or ``monthly_budget``;
    ``value`` what is spent of ``limit`` (credits); ``account`` the key or team id."""

    account: str
    whose: str  # "key" or "team"
    kind: str
    fraction: float
    value: int
    limit: int
    at: float
    key_id: str = ""  # the key whose settlement crossed it

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_fields(cls, f: dict[str, str]) -> ThresholdEvent:
        """An event as the stream holds it (every field a string)."""
        return cls(
            f["account"], f["whose"], f["kind"], float(f["fraction"]), int(f["value"]),
            int(f["limit"]), float(f["at"]), f.get("key_id", ""),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Watched:
    """What to check for one account: its counters' names and its budgets."""

    account: str
    whose: str
    limits: KeyLimits
    spend_day: str
    spend_month: str
    balance: bool  # whether its balance is its own (a team's key's is the team's)


def watched(key_id: str, team: str, limits: KeyLimits, team_limits: KeyLimits) -> list[Watched]:
    """The accounts a settlement of ``key_id`` can move: the key, and its team if any."""
    now = time.gmtime()
    day, month = time.strftime("%Y%m%d", now), time.strftime("%Y%m", now)
    if not team:
        return [
            Watched(key_id, "key", limits, schema.spend_day(key_id, day),
                    schema.spend_month(key_id, month), True)
        ]  # fmt: skip
    return [
        Watched(team, "team", team_limits, schema.spend_day(team, day),
                schema.spend_month(team, month), True),
        Watched(key_id, "key", limits, schema.member(team, key_id, f"spend:d:{day}"),
                schema.member(team, key_id, f"spend:m:{month}"), False),
    ]  # fmt: skip


class Alerts:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def check(
        self, w: Watched, key_id: str, fractions: tuple[float, ...]
    ) -> list[ThresholdEvent]:
        """The events this account's counters now call for that no process fired yet."""
        now = time.time()
        candidates: list[tuple[str, float, int, int, str, int]] = []
        async with guard():
            if w.balance:
                raw = cast(str | None, await self.redis.get(schema.alert_reference(w.account)))
                ref_text, _, topped_up = (raw or "0").partition(" ")
                ref = int(ref_text)
                if ref > 0:
                    balance = int(
                        cast(str | None, await self.redis.get(schema.balance(w.account))) or 0
                    )
                    for f in fractions:
                        candidates.append(
                            ("balance", f, ref - balance, ref, f"balance:{topped_up}", 40 * _DAY)
                        )
            for kind, limit, counter, period, ttl in (
                ("daily_budget", w.limits.daily_budget, w.spend_day, w.spend_day[-8:], 2 * _DAY),
                (
                    "monthly_budget",
                    w.limits.monthly_budget,
                    w.spend_month,
                    w.spend_month[-6:],
                    40 * _DAY,
                ),
            ):
                if limit:
                    spent = int(cast(str | None, await self.redis.get(counter)) or 0)
                    for f in fractions:
                        candidates.append((kind, f, spent, limit, f"{kind}:{period}", ttl))
            fired = []
            for kind, f, value, limit, name, ttl in candidates:
                if value < f * limit:
                    continue
                marker = schema.alert_marker(w.account, f"{name}:{f}")
                if not await self.redis.set(marker, "1", nx=True, ex=ttl):
                    continue  # fired already, here or by another process
                event = ThresholdEvent(w.account, w.whose, kind, f, value, limit, now, key_id)
                await self.append(event)
                fired.append(event)
        return fired

    async def append(self, event: ThresholdEvent) -> str:
        """Add one event to the stream; its entry id (what the webhook sends as its id)."""
        fields = {k: str(v) for k, v in event.to_json().items()}
        async with guard():
            entry_id = await self.redis.xadd(
                schema.ALERTS,
                fields,  # type: ignore[arg-type]  # invariant stub
                maxlen=ALERTS_MAX_ENTRIES,
                approximate=True,
            )
        return str(entry_id)

    async def limits_of(self, key_id: str, team: str) -> tuple[KeyLimits, KeyLimits]:
        """A key's limits and its team's, as stored (for a hold the reaper settled: the
        process that admitted it, with its auth cache, is gone)."""
        async with guard():
            key = cast(dict[str, str], await self.redis.hgetall(schema.key_record(key_id)))
            of_team: dict[str, str] = {}
            if team:
                of_team = cast(dict[str, str], await self.redis.hgetall(schema.team_record(team)))
        limits = ApiKey.from_hash(key).limits if key else KeyLimits()
        return limits, Team.from_hash(of_team).limits if of_team else KeyLimits()

    async def latest(self, limit: int = 100) -> list[ThresholdEvent]:
        """The latest events, newest first."""
        async with guard():
            rows = cast(
                list[tuple[str, dict[str, str]]],
                await self.redis.xrevrange(schema.ALERTS, count=limit),
            )
        return [ThresholdEvent.from_fields(f) for _, f in rows]
