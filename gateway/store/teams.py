"""Teams: a shared balance, ledger and limits over any number of keys, and moving a key
into, out of or between teams.

A team's money and counters live under its own hash tag, and so does the metering
of each of its keys (``schema.member``), so one script admits or settles a member's
request (``lua/admit_team.lua``, ``lua/settle_team.lua``). A key's hash tag follows
its team, so moving a key moves its counters: the move marks the key ``moving`` (its
requests are refused with a 429 meanwhile), waits until every process's auth cache
has seen the mark, refuses (409) if the key still has requests in flight, then
carries its rate and spend counters over and names the new team.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
import uuid
from typing import cast

from gateway import amounts
from gateway.errors import InvalidRequest, NotFound
from gateway.store import ledger_export, schema
from gateway.store.holds import WINDOW_SECONDS, window_of
from gateway.store.records import ApiKey, KeyLimits, LedgerEntry, Team
from gateway.store.store import Store, guard

MOVE_MARGIN_SECONDS = 0.2  # a move waits auth.cache_ttl and this
MOVE_WAIT_SECONDS = 1.0 + MOVE_MARGIN_SECONDS  # with the default auth.cache_ttl (1 s)
TEAM_PREFIX = "team_"  # a team's id; a key's is "key_..."


def is_team(account: str) -> bool:
    """Whether an id names a team (``team_...``) rather than a key (``key_...``)."""
    return account.startswith(TEAM_PREFIX)


def new_team_id() -> str:
    return TEAM_PREFIX + secrets.token_hex(8)


class Teams:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.redis = store.redis

    async def create(
        self,
        name: str,
        *,
        balance: int = 0,
        limits: KeyLimits | None = None,
        note: str = "",
        actor: str | None = None,
    ) -> Team:
        amounts.credits(balance, "balance", minimum=0)  # checked before anything is written
        if limits is not None:
            limits.check()
        team = Team(new_team_id(), name, time.time(), limits or KeyLimits(), note)
        async with guard():
            await self.redis.hset(schema.team_record(team.id), mapping=team.to_hash())  # type: ignore[arg-type]  # invariant stub
            await self.redis.sadd(schema.TEAM_INDEX, team.id)
        if balance:
            await self.credit(team.id, balance, note="initial balance")
        details = {"name": name, "balance": balance, "note": note}
        await self._store.audit(actor, "team.create", "", details | {"team": team.id})
        return team

    async def get(self, team_id: str) -> Team:
        async with guard():
            h = cast(dict[str, str], await self.redis.hgetall(schema.team_record(team_id)))
        if not h:
            raise NotFound(f"no team with id {team_id!r}")
        return Team.from_hash(h)

    async def all(self) -> list[Team]:
        async with guard():
            ids = sorted(cast(set[str], await self.redis.smembers(schema.TEAM_INDEX)))
        teams = [await self.get(team_id) for team_id in ids]
        return sorted(teams, key=lambda t: t.created_at)

    async def members(self, team_id: str) -> list[str]:
        async with guard():
            return sorted(cast(set[str], await self.redis.smembers(schema.team_members(team_id))))

    async def set_limits(
        self, team_id: str, limits: KeyLimits, *, actor: str | None = None
    ) -> Team:
        """Replace a team's limits; every process applies them within ``auth.cache_ttl``."""
        limits.check()
        team = await self.get(team_id)
        async with guard():
            await self.redis.hset(schema.team_record(team_id), mapping=limits.to_hash())  # type: ignore[arg-type]  # invariant stub
        updated = dataclasses.replace(team, limits=limits)
        limits_json = updated.to_json()["limits"]
        await self._store.audit(actor, "team.limits", "", {"team": team_id, "limits": limits_json})
        return updated

    async def credit(
        self, team_id: str, credits: int, *, note: str = "", actor: str | None = None
    ) -> int:
        """Add credits to a team's balance (or remove them) with a ledger entry."""
        amounts.credits(credits, "credits")
        await self.get(team_id)
        fields = {"kind": "credit", "at": repr(time.time()), "note": note}
        _, balance = await self._store.post(team_id, uuid.uuid4().hex, credits, fields)
        if credits > 0:
            await self._store.set_alert_reference(team_id, balance)
        details = {"team": team_id, "credits": credits, "note": note, "balance": balance}
        await self._store.audit(actor, "team.credit", "", details)
        return balance

    async def spent_this_month(self, team_id: str, now: float | None = None) -> int:
        """Credits the team's keys were charged this UTC month: its spend counter, one
        GET (the list of teams reads it for each, not a month of every key's days)."""
        month = time.strftime("%Y%m", time.gmtime(time.time() if now is None else now))
        async with guard():
            value = cast(str | None, await self.redis.get(schema.spend_month(team_id, month)))
        return int(value or 0)

    async def usage(self, key: ApiKey) -> list[LedgerEntry]:
        """A key's ledger, oldest first: its own, and its entries in the ledger of every
        team it is or has been in (``ledger_export.key_entries``)."""
        query = ledger_export.LedgerQuery()
        return [e async for e in ledger_export.key_entries(self._store, key, query)]

    async def in_flight(self, key: ApiKey) -> int:
        """How many requests of ``key`` hold a reservation now."""
        async with guard():
            if key.team:
                return int(await self.redis.scard(schema.member(key.team, key.id, "holds")))
            return int(await self.redis.hlen(schema.holds(key.id)))

    async def move(
        self,
        key_id: str,
        team_id: str | None,
        *,
        actor: str | None = None,
        wait: float = MOVE_WAIT_SECONDS,
    ) -> ApiKey:
        """Move a key into ``team_id`` (``None``: out of its team, onto its own balance).

        Refused with a 409 ``key_busy`` while the key has requests in flight, and with a
        409 ``key_moving`` while another move of it is under way. ``wait`` must cover
        the serving processes' ``auth.cache_ttl``.
        """
        key = await self._store.get_key(key_id)
        target = team_id or ""
        if target:
            await self.get(target)
        if key.team == target:
            return key
        if await self.in_flight(key):
            raise _busy(key_id)
        record = schema.key_record(key_id)
        async with guard():
            if not await self.redis.hsetnx(record, "moving", "1"):
                raise InvalidRequest(
                    f"key {key_id!r} is being moved already", code="key_moving", status=409
                )
        try:
            await asyncio.sleep(wait)  # every process now refuses the key's new requests
            if await self.in_flight(key):
                raise _busy(key_id)
            await self._carry_counters(key, target)
            async with guard():
                # Where the key's aggregates of its time in each team stay readable
                # (``aggregates.read_key``): its earlier team's too, for a key put in
                # it before this history was kept.
                places = [t for t in (key.team, target) if t]
                if places:
                    await self.redis.sadd(schema.key_teams(key_id), *places)
                if target:
                    await self.redis.hset(record, "team", target)
                    await self.redis.sadd(schema.team_members(target), key_id)
                    await self.redis.sadd(schema.team_keys_ever(target), key_id)
                else:
                    await self.redis.hdel(record, "team")
                if key.team:
                    await self.redis.srem(schema.team_members(key.team), key_id)
        finally:
            async with guard():
                await self.redis.hdel(record, "moving")
        details: dict[str, object] = {"from": key.team or None, "to": target or None}
        await self._store.audit(actor, "key.move", key_id, details)
        return await self._store.get_key(key_id)

    async def _carry_counters(self, key: ApiKey, target: str) -> None:
        """Add the key's rate and spend counters to its new place, and drop the old.

        Safe without a script across slots: nothing of the key is admitted meanwhile.
        """
        now = time.time()
        window = window_of(now)
        day, month = (
            time.strftime("%Y%m%d", time.gmtime(now)),
            time.strftime("%Y%m", time.gmtime(now)),
        )
        names = [f"rpm:{w}" for w in (window - 1, window)]
        names += [f"tpm:{w}" for w in (window - 1, window)]
        names += [f"spend:d:{day}", f"spend:m:{month}"]
        async with guard():
            for name in names:
                old, new = _counter(key.team, key.id, name), _counter(target, key.id, name)
                value = int(cast(str | None, await self.redis.get(old)) or 0)
                ttl = int(await self.redis.ttl(old))
                await self.redis.delete(old)
                if value:
                    await self.redis.incrby(new, value)
                    await self.redis.expire(new, ttl if ttl > 0 else WINDOW_SECONDS * 2)


def _counter(team: str, key_id: str, name: str) -> str:
    """A key's counter: under its team's tag, or its own (``schema``'s account names)."""
    if team:
        return schema.member(team, key_id, name)
    kind, _, rest = name.partition(":")
    if kind == "rpm":
        return schema.requests_window(key_id, int(rest))
    if kind == "tpm":
        return schema.tokens_window(key_id, int(rest))
    period, _, when = rest.partition(":")
    return schema.spend_day(key_id, when) if period == "d" else schema.spend_month(key_id, when)


def _busy(key_id: str) -> InvalidRequest:
    return InvalidRequest(
        f"key {key_id!r} has requests in flight; move it once they end",
        code="key_busy",
        status=409,
    )
