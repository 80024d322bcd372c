"""Holds: the credits and limits reserved by requests in flight, and their settlement.

Admission (``lua/admit.lua``) checks an account's limits and holds the most a
request can cost; settlement (``lua/settle.lua``) releases the hold, charges
the true cost and appends the ledger entry, once per charge id. A route's
shared limits are an account of their own (``route:<agent>``) that holds no
money. Every hold carries a lease; a live process renews it with the request's
progress, and the reaper settles holds whose process died.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from typing import Any, cast

import orjson
from redis import asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from gateway.store import schema
from gateway.store.gateway_totals import GatewayTotals
from gateway.store.pipelining import Command, Pipeliner
from gateway.store.records import KeyLimits
from gateway.store.resp import Arg, Run, bulk, bulk_string
from gateway.store.store import (
    DAY_AGGREGATE_TTL,
    ENTRY_MARKER_TTL,
    guard,
    load_script,
    unavailable,
)
from gateway.typed import fast_init, maker

WINDOW_SECONDS = 60
SPEND_TTL = 40 * 24 * 3600  # a month's spend counter outlives the month
HOUR_AGGREGATE_TTL = 8 * 24 * 3600  # a key's (and the gateway's) hourly aggregates


# The settlement's constant arguments, as text: an int argument costs the packer a repr
# at each settlement.
_ENTRY_MARKER_TTL = str(ENTRY_MARKER_TTL)
_SPEND_TTL = str(SPEND_TTL)
_HOUR_AGGREGATE_TTL = str(HOUR_AGGREGATE_TTL)
_DAY_AGGREGATE_TTL = str(DAY_AGGREGATE_TTL)
_WINDOW_TTL = str(WINDOW_SECONDS * 2)  # a window's counters outlive it by a window


def float_text(x: float) -> str:
    """``repr(x)``, for a fraction of its cost where it is the same text: a time, in a
    hold record, a lease's score or a ledger entry (``repr`` of a float costs about 7k
    instructions, orjson's writer a tenth of that).

    Both write the shortest text that reads back as ``x``, in the same notation, for
    every finite ``x`` from 1e-4 up (``tests/gateway/store/test_holds.py`` holds them
    to it); below 1e-4 orjson writes ``0.00001`` where ``repr`` writes ``1e-05``, and it
    writes ``null`` for infinities and NaN, so those (and negative numbers) take
    ``repr``."""
    if 0.0001 <= x <= _LARGEST:
        return orjson.dumps(x).decode()
    return repr(x)


_LARGEST = sys.float_info.max


def window_of(at: float) -> int:
    return int(at // WINDOW_SECONDS)


# A day's windows: ``window_of(at) // WINDOWS_A_DAY`` is ``int(at // 86400)``, the UTC day
# (days since the epoch), without dividing the time again (the floor of a floor is the
# floor of the whole division; ``tests/gateway/store/test_holds.py`` holds them equal).
WINDOWS_A_DAY = 86400 // WINDOW_SECONDS


@fast_init
@dataclass(frozen=True, slots=True)
class HoldRecord:
    """What a hold stores: the reservation, its lease, and the request's progress."""

    credits: int
    tokens: int
    lease_until: float
    request_id: str
    key_id: str
    agent: str
    backend: str
    started_at: float
    # Progress at the last renewal, charged if the process dies: tokens so far and their cost.
    input_tokens: int = 0
    output_tokens: int = 0
    progress_credits: int = 0
    team: str = ""  # the key's team at admission: the hold is on the team's balance
    # In a team: the key had a budget of its own at admission, so its held credits and
    # spend are counted too (``lua/admit_team.lua``).
    key_budget: bool = False

    @property
    def account(self) -> str:
        """Whose balance holds this request (and whose hash tag its hold lives under)."""
        return self.team or self.key_id

    def encode(self, lease: str | None = None) -> str:
        """The record as ``lua/admit.lua`` stores it: credits, tokens, lease and JSON.
        ``lease``: ``float_text(self.lease_until)``, for a caller that has it already
        (admission, for the lease's ``ZADD`` too: one float written once)."""
        rest = {
            "request_id": self.request_id,
            "key_id": self.key_id,
            "agent": self.agent,
            "backend": self.backend,
            "started_at": self.started_at,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "progress_credits": self.progress_credits,
        }
        if self.team:  # absent for a key without a team: its records stay as they were
            rest["team"] = self.team
        if self.key_budget:
            rest["key_budget"] = True
        if lease is None:
            lease = float_text(self.lease_until)
        return f"{self.credits}:{self.tokens}:{lease}:{orjson.dumps(rest).decode()}"

    @classmethod
    def decode(cls, raw: str) -> HoldRecord:
        credits, tokens, lease, rest = raw.split(":", 3)
        return cls(int(credits), int(tokens), float(lease), **orjson.loads(rest))


# ``HoldRecord(...)`` for admission, every field by keyword (six of them are text: a
# reordered call would pass the type checker; positional, it is a ``TypeError``), made
# without the class's call (``typed.maker``: about half its instructions).
hold_record = maker(HoldRecord, keywords_only=True)


@fast_init
@dataclass(frozen=True, slots=True)
class Charge:
    """A settlement to write (``Holds.settle``): ``credits`` and ``tokens`` charged once
    for ``charge_id`` of ``record``'s request, with its ledger ``fields``; the route's
    hold released too if ``route``; counted as an error if ``failed``.

    ``fields``: a dict of name and value, or the same flat (name, value, name, value...,
    each name once), as ``settlement.ledger_fields`` makes them: the entry is the same."""

    record: HoldRecord
    charge_id: str
    credits: int
    tokens: int
    fields: dict[str, str] | list[str]
    route: bool
    failed: bool = False


# ``Charge(...)``, every field by keyword (``credits`` and ``tokens`` are both ints:
# swapped, they would pass the type checker), made as ``hold_record`` makes its record.
make_charge = maker(Charge, keywords_only=True)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an account refused a request: ``reason`` as ``admit.lua`` names it."""

    reason: str
    current: int
    limit: int
    retry_after: float = 0.0
    whose: str = "key"  # "key", or "team" for a limit or the balance of the key's team


@fast_init
@dataclass(frozen=True, slots=True)
class Admitted:
    balance: int  # settled credits at admission
    held: int  # credits held by requests in flight, this one included
    requests: int  # requests in the current window, this one included
    tokens: int  # tokens reserved in the current window, this one included


class Holds:
    def __init__(self, redis: aioredis.Redis, *, cluster: bool = False) -> None:
        self.redis = redis
        self._pipeliner = None if cluster else Pipeliner(redis)
        self._admit = load_script(redis, "admit")
        self._settle = load_script(redis, "settle")
        self._release = load_script(redis, "release")
        self._renew = load_script(redis, "renew")
        self._admit_team = load_script(redis, "admit_team")
        self._settle_team = load_script(redis, "settle_team")
        self._release_team = load_script(redis, "release_team")
        self._scripts = [self._admit, self._settle, self._release, self._renew]
        self._scripts += [self._admit_team, self._settle_team, self._release_team]
        # The gateway-wide aggregates: counted here, flushed by ``totals.run()``.
        self.totals = GatewayTotals(redis, HOUR_AGGREGATE_TTL, DAY_AGGREGATE_TTL)

    async def _run(self, commands: list[Command]) -> list[Any]:
        """The replies to ``commands``, sent together: pipelined with those of concurrent
        requests, on a single Redis. On Redis Cluster
        they run one after another (each script still atomic within its account's slot).

        Every command sent here is safe to run twice, so the commands are sent again
        when Redis may have run them with the answer lost (a connection that broke
        after the write; a cluster client's retry), and when Redis has forgotten its
        scripts (a restart, a failover): admission holds once per charge id, and
        settlement, release and renewal act once on a hold; ZADD and ZREM of a
        lease are idempotent. A command added here must keep that true."""
        try:
            return await self._sent(commands)
        except NoScriptError:
            return await self._reloaded(commands)

    async def _reloaded(self, commands: list[Command]) -> list[Any]:
        """``commands`` sent again once Redis has its scripts back (``_run``)."""
        for script in self._scripts:
            await self.redis.script_load(script.script)
        return await self._sent(commands)

    def _sent(self, commands: list[Command]) -> Awaitable[list[Any]]:
        """The replies, to await: the pipeliner's future itself, without a coroutine of
        its own (``Pipeliner.run`` is ``submit`` awaited) on the usual path."""
        if self._pipeliner is not None:
            return self._pipeliner.submit(commands, idempotent=True)
        return self._one_by_one(commands)

    async def _one_by_one(self, commands: list[Command]) -> list[Any]:
        redis: Any = self.redis  # execute_command is untyped in redis-py
        return [await redis.execute_command(*command) for command in commands]

    def _admit_step(
        self,
        account: str,
        charge_id: str,
        record: HoldRecord,
        limits: KeyLimits,
        check_money: bool,
        lease: str | None = None,
    ) -> Command:
        """``lua/admit.lua`` for ``account``: its SHA and keys, the request's own
        arguments, then the account's limits (``_admit_limits``). ``lease``: as
        ``HoldRecord.encode`` takes it."""
        window = window_of(record.started_at)
        head = _admit_head(self._admit.sha, account, window, window // WINDOWS_A_DAY)
        # An account that holds no money (a route) records a hold of 0 credits.
        held = record if check_money else replace(record, credits=0)
        own = (charge_id, held.encode(lease), held.credits, record.tokens)
        # The limits by value: a tuple of ints is hashed in C, a ``KeyLimits`` in Python.
        tail = _admit_limits(check_money, *_limit_args(limits))
        return self._script_command(head, own, tail)

    def _admit_team_step(
        self,
        charge_id: str,
        record: HoldRecord,
        key_limits: KeyLimits,
        team_limits: KeyLimits,
        check_money: bool,
        lease: str | None = None,
    ) -> Command:
        """``lua/admit_team.lua``: as ``_admit_step``, with the team's limits and then
        the key's."""
        window = window_of(record.started_at)
        head = _admit_team_head(
            self._admit_team.sha, record.team, record.key_id, window, window // WINDOWS_A_DAY
        )
        held = record if check_money else replace(record, credits=0)
        own = (charge_id, held.encode(lease), held.credits, record.tokens)
        return self._script_command(
            head, own, _admit_team_limits(check_money, team_limits, key_limits)
        )

    def _script_command(self, head: Run, own: tuple[Arg, ...], tail: Run) -> Command:
        """A script's command of the arguments that ``head`` and ``tail`` hold, packed
        once, and of the request's ``own`` between them: packed here for the pipeliner
        (only ``own`` packed now), as they are for Redis Cluster's client."""
        if self._pipeliner is None:
            return (*head.args, *own, *tail.args)
        return b"".join((head.resp, bulk(own), tail.resp))

    def _lease_add(self, account: str, charge_id: str, until: str) -> Command:
        """The lease's ``ZADD``, ``until`` its end as text (``float_text``): for the
        pipeliner packed here, with the part every lease shares (``ZADD`` and the set's
        name) packed once (``_LEASE_ZADD``)."""
        member = _lease_member(account, charge_id)
        if self._pipeliner is None:  # Redis Cluster's client packs its own commands
            return ("ZADD", schema.LEASES, until, member)
        return _LEASE_ZADD + bulk((until, member))

    def _lease_remove(self, account: str, charge_id: str) -> Command:
        """The lease's ``ZREM``: for the pipeliner, packed as ``_lease_add``."""
        member = _lease_member(account, charge_id)
        if self._pipeliner is None:
            return ("ZREM", schema.LEASES, member)
        return _LEASE_ZREM + bulk_string(member)

    async def admit(
        self,
        charge_id: str,
        record: HoldRecord,
        key_limits: KeyLimits,
        check_money: bool,
        route_limits: KeyLimits | None,
        team_limits: KeyLimits | None = None,
    ) -> Admitted | Refusal:
        """Hold ``record`` for the key (and the route, if it has limits): one round trip.

        A key in a team (``record.team``) is held on the team's balance, within the
        team's limits (``team_limits``) and its own, in one script.
        On a refusal nothing stays held (a hold one side granted is released).
        """
        lease = float_text(record.lease_until)  # the lease's score, and in the record
        if record.team:
            step = self._admit_team_step(
                charge_id, record, key_limits, team_limits or KeyLimits(), check_money, lease
            )
        else:
            step = self._admit_step(
                record.key_id, charge_id, record, key_limits, check_money, lease
            )
        commands = [self._lease_add(record.account, charge_id, lease), step]
        if route_limits is not None:
            route = schema.route_account(record.agent)
            commands.append(self._admit_step(route, charge_id, record, route_limits, False, lease))
        try:  # guard() and _run, inline: neither guard()'s two coroutines nor _run's
            try:
                results = await self._sent(commands)
            except NoScriptError:
                results = await self._reloaded(commands)
        except RedisError as exc:
            raise unavailable(exc) from exc
        key_result = _parse(results[1], record.started_at)
        route_result = _parse(results[2], record.started_at) if route_limits else None
        if isinstance(key_result, Refusal) or isinstance(route_result, Refusal):
            await self.release(record, charge_id, key=isinstance(key_result, Admitted),
                               route=isinstance(route_result, Admitted))  # fmt: skip
            refusal = key_result if isinstance(key_result, Refusal) else route_result
            return cast(Refusal, refusal)
        return key_result

    async def release(self, record: HoldRecord, charge_id: str, *, key: bool, route: bool) -> None:
        """Drop holds of a request that never ran (admission refused on the other side)."""
        window = window_of(record.started_at)
        commands: list[Command] = []
        if key and record.team:
            holds, held, requests, tokens_window = _member_keys(record.team, record.key_id, window)
            keys = [*_release_keys(record.team, window), holds, tokens_window, requests]
            if record.key_budget:
                keys.append(held)
            commands.append(_script_step(self._release_team, keys, [charge_id, 0, 1]))
        accounts = [record.key_id] if key and not record.team else []
        if route:
            accounts.append(schema.route_account(record.agent))
        for account in accounts:
            commands.append(
                _script_step(self._release, _release_keys(account, window), [charge_id, 0, 1])
            )
        commands.append(self._lease_remove(record.account, charge_id))
        async with guard():
            await self._run(commands)

    async def settle(self, charge: Charge) -> bool:
        """Charge ``charge.credits`` once for its charge id, release the holds; False if
        done before.

        The key's aggregates (exact, in the same script) and the gateway's (best-effort,
        ``gateway_totals``) count the request, and an error if it ``failed``.
        """
        commands, settled = self._settlement(charge)
        async with guard():
            results = await self._run(commands)
        return settled(results)

    def settle_soon(
        self, charge: Charge
    ) -> tuple[asyncio.Future[list[Any]], Callable[[list[Any]], bool]] | None:
        """``settle``'s commands queued for the pipeliner's next round trip, without a
        task or a coroutine of their own: the future of their replies, and what turns
        the replies into ``settle``'s answer (counting the gateway's aggregates). The
        future fails with the round trip's own error (NOSCRIPT after Redis lost its
        scripts, a connection error), untranslated and never retried here: the caller
        settles through ``settle`` then, which reloads scripts and answers a 503. None on
        Redis Cluster (no pipeliner)."""
        if self._pipeliner is None:
            return None
        commands, settled = self._settlement(charge)
        return self._pipeliner.submit(commands, idempotent=True), settled

    def _settlement(self, charge: Charge) -> tuple[list[Command], Callable[[list[Any]], bool]]:
        """A settlement's commands, and what makes its answer of their replies."""
        record, charge_id, fields = charge.record, charge.charge_id, charge.fields
        credits, tokens, failed = charge.credits, charge.tokens, charge.failed
        key_id, account = record.key_id, record.account
        window = window_of(record.started_at)
        now = time.time()  # spend counts on the day (and hour) it is settled
        hour, day_number, day = _hour_and_day(int(now // 3600))
        if record.team:  # the team's ledger names the key; the key's own caps count it too
            head, tail = _settle_team_runs(
                self._settle_team.sha,
                record.team,
                key_id,
                window,
                hour,
                day_number,
                record.key_budget,
            )
            fields = _with_field(fields, "key_id", key_id)
        else:
            head, tail = _settle_runs(self._settle.sha, account, window, hour, day_number)
        # KEYS[5], the charge's idempotency marker, is the one key made per request.
        marker = schema.entry_marker(account, charge_id)
        # A ledger entry only for a cost; the request counted as an error if it failed.
        flags = _SETTLE_FLAGS[bool(credits or tokens), failed]
        # ARGV[1..4]: the request's own, the ledger with them (one packing call for four).
        own = (charge_id, credits, tokens, ledger_argument(fields))
        script: Command
        if self._pipeliner is None:  # Redis Cluster's client packs its own commands
            script = (*head.args, marker, *tail.args, *own, *flags.args)
        else:  # head's, tail's and flags' arguments packed once; the request's now
            parts = (head.resp, bulk_string(marker), tail.resp, bulk(own), flags.resp)
            script = b"".join(parts)
        commands = [script]
        if charge.route:
            route_keys = _release_keys(schema.route_account(record.agent), window)
            commands.append(_script_step(self._release, route_keys, [charge_id, tokens, "0"]))
        commands.append(self._lease_remove(account, charge_id))

        def settled(results: list[Any]) -> bool:
            if results[0][0]:
                self.totals.add(key_id, record.agent, credits, failed, fields, hour, day)
            return bool(results[0][0])

        return commands, settled

    async def renew(self, leases: list[tuple[str, HoldRecord]]) -> None:
        """Extend live holds' leases and record their progress, in one round trip."""
        commands: list[Command] = []
        for charge_id, record in leases:
            keys, lease = [schema.holds(record.account)], float_text(record.lease_until)
            commands.append(_script_step(self._renew, keys, [charge_id, record.encode(lease)]))
            commands.append(self._lease_add(record.account, charge_id, lease))
        async with guard():
            await self._run(commands)

    async def expired(
        self, now: float, limit: int = 100
    ) -> list[tuple[str, str, HoldRecord | None]]:
        """Holds whose lease ran out: (account, charge id, record or None if already gone);
        the account is the key id, or the team id of a key in a team."""
        async with guard():
            members = cast(
                list[str],
                await self.redis.zrangebyscore(schema.LEASES, "-inf", now, start=0, num=limit),
            )
            found: list[tuple[str, str, HoldRecord | None]] = []
            for member in members:
                key_id, _, charge_id = member.partition(" ")
                raw = cast(str | None, await self.redis.hget(schema.holds(key_id), charge_id))
                found.append((key_id, charge_id, HoldRecord.decode(raw) if raw else None))
        return found

    async def forget_lease(self, key_id: str, charge_id: str) -> None:
        async with guard():
            await self.redis.zrem(schema.LEASES, _lease_member(key_id, charge_id))

    async def reset_idle(self) -> None:
        """Close the pool's idle connections: after an outage they lead to a dead server."""
        pool = getattr(self.redis, "connection_pool", None)  # a cluster client has none
        if pool is not None:
            with contextlib.suppress(Exception):
                await pool.disconnect(inuse_connections=False)


def aggregate_hour(at: float) -> str:
    """``YYYYMMDDHH``: the UTC hour of ``at``."""
    return _hour(int(at // 3600))


@functools.lru_cache(maxsize=4)
def _hour(hour: int) -> str:
    return time.strftime("%Y%m%d%H", time.gmtime(hour * 3600))


@functools.lru_cache(maxsize=4)
def _hour_and_day(hour: int) -> tuple[str, int, str]:
    """A settlement's clock, of ``hour`` (hours since the epoch, ``int(now // 3600)``): the
    hour ``YYYYMMDDHH`` (``aggregate_hour``), the UTC day (days since the epoch:
    ``int(now // 86400)``) and ``YYYYMMDD``, looked up once an hour, not per request."""
    day = hour // 24
    return _hour(hour), day, _day_and_month(day)[0]


def _spend_keys(account: str, at: float) -> list[str]:
    """The account's spend counters of the UTC day and month of ``at``."""
    day, month = _day_and_month(int(at // 86400))
    return [schema.spend_day(account, day), schema.spend_month(account, month)]


@functools.lru_cache(maxsize=4)
def _day_and_month(day: int) -> tuple[str, str]:
    """``YYYYMMDD`` and ``YYYYMM`` of a UTC day (days since the epoch: 86,400 s each)."""
    utc = time.gmtime(day * 86400)
    return time.strftime("%Y%m%d", utc), time.strftime("%Y%m", utc)


# The keys of a script, made once per account and minute (or hour, or day) rather than
# per request: most requests of an account share them. Tuples of names only, so a
# cache of many accounts stays small.
@functools.lru_cache(maxsize=1024)
def _admit_keys(account: str, window: int, day: int) -> tuple[str, ...]:
    """``lua/admit.lua``'s KEYS: the account's, in ``window`` and on ``day`` (UTC days
    since the epoch, as ``_day_and_month`` takes them)."""
    day_text, month = _day_and_month(day)
    return (
        schema.balance(account),
        schema.holds(account),
        schema.held(account),
        schema.requests_window(account, window),
        schema.tokens_window(account, window),
        schema.spend_day(account, day_text),
        schema.spend_month(account, month),
    )


@functools.lru_cache(maxsize=1024)
def _admit_team_keys(team: str, key_id: str, window: int, day: int) -> tuple[str, ...]:
    """``lua/admit_team.lua``'s KEYS: the team's, then its member ``key_id``'s."""
    day_text, month = _day_and_month(day)
    return (
        *_admit_keys(team, window, day),
        *_member_keys(team, key_id, window),
        schema.member(team, key_id, f"spend:d:{day_text}"),
        schema.member(team, key_id, f"spend:m:{month}"),
    )


@functools.lru_cache(maxsize=1024)
def _settle_keys(
    account: str, window: int, hour: str, day: int
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``lua/settle.lua``'s KEYS before the charge's marker (KEYS[5]) and after it: the
    account's, with the tokens counter of the admission's ``window``, the spend
    counters and aggregates of the settlement's ``hour`` and ``day``."""
    day_text, month = _day_and_month(day)
    head = (
        schema.balance(account),
        schema.holds(account),
        schema.held(account),
        schema.ledger(account),
    )
    tail = (
        schema.tokens_window(account, window),
        schema.spend_day(account, day_text),
        schema.spend_month(account, month),
        schema.aggregate_hour(account, hour),
        schema.aggregate_day(account, day_text),
    )
    return head, tail


@functools.lru_cache(maxsize=1024)
def _settle_team_keys(
    team: str, key_id: str, window: int, hour: str, day: int, key_budget: bool
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``lua/settle_team.lua``'s KEYS, as ``_settle_keys``: the team's, but the
    aggregates are the key's under the team's tag (counted once: the team's are their
    sum, ``aggregates.read_key``, ``aggregates.read_team``); then the key's holds and
    tokens counter, and its held and spend counters if it had a budget at admission."""
    day_text, month = _day_and_month(day)
    head, tail = _settle_keys(team, window, hour, day)
    holds, held, _, tokens_window = _member_keys(team, key_id, window)
    tail = (
        *tail[:3],
        schema.member_aggregate_hour(team, key_id, hour),
        schema.member_aggregate_day(team, key_id, day_text),
        holds,
        tokens_window,
    )
    if key_budget:
        tail += (
            held,
            schema.member(team, key_id, f"spend:d:{day_text}"),
            schema.member(team, key_id, f"spend:m:{month}"),
        )
    return head, tail


@functools.lru_cache(maxsize=1024)
def _admit_head(sha: str, account: str, window: int, day: int) -> Run:
    """``lua/admit.lua``'s command up to its ARGV: its SHA and ``_admit_keys``."""
    keys = _admit_keys(account, window, day)
    return Run.first(3 + len(keys) + _ADMIT_ARGS, "EVALSHA", sha, len(keys), *keys)


@functools.lru_cache(maxsize=1024)
def _admit_team_head(sha: str, team: str, key_id: str, window: int, day: int) -> Run:
    """``lua/admit_team.lua``'s command up to its ARGV: its SHA and ``_admit_team_keys``."""
    keys = _admit_team_keys(team, key_id, window, day)
    return Run.first(3 + len(keys) + _ADMIT_TEAM_ARGS, "EVALSHA", sha, len(keys), *keys)


_ADMIT_ARGS = 11  # lua/admit.lua's ARGV: the request's 4, then ``_admit_limits``
_ADMIT_TEAM_ARGS = 16  # lua/admit_team.lua's: the request's 4, then ``_admit_team_limits``


@functools.lru_cache(maxsize=1024)
def _admit_limits(check_money: bool, *limits: int) -> Run:
    """``lua/admit.lua``'s ARGV[5..11]: whether to check money, the account's limits
    (``_limit_args``), the window's TTL."""
    return Run.of("1" if check_money else "0", *limits, _WINDOW_TTL)


@functools.lru_cache(maxsize=1024)
def _admit_team_limits(check_money: bool, team_limits: KeyLimits, key_limits: KeyLimits) -> Run:
    """``lua/admit_team.lua``'s ARGV[5..16]: as ``_admit_limits``, the team's limits then
    the key's."""
    check = "1" if check_money else "0"
    return Run.of(check, *_limit_args(team_limits), *_limit_args(key_limits), _WINDOW_TTL)


def _limit_args(limits: KeyLimits) -> tuple[int, ...]:
    return (
        limits.rpm,
        limits.tpm,
        limits.max_concurrent,
        limits.daily_budget,
        limits.monthly_budget,
    )


_SETTLE_ARGS = 10  # lua/settle.lua's and lua/settle_team.lua's ARGV


@functools.lru_cache(maxsize=1024)
def _settle_runs(sha: str, account: str, window: int, hour: str, day: int) -> tuple[Run, Run]:
    """``lua/settle.lua``'s command up to its KEYS[5] (the charge's marker, made per
    request), and its keys after it: ``_settle_keys``."""
    head, tail = _settle_keys(account, window, hour, day)
    count = 3 + len(head) + 1 + len(tail) + _SETTLE_ARGS
    return Run.first(count, "EVALSHA", sha, len(head) + 1 + len(tail), *head), Run.of(*tail)


@functools.lru_cache(maxsize=1024)
def _settle_team_runs(
    sha: str, team: str, key_id: str, window: int, hour: str, day: int, key_budget: bool
) -> tuple[Run, Run]:
    """``lua/settle_team.lua``'s, as ``_settle_runs``: ``_settle_team_keys``."""
    head, tail = _settle_team_keys(team, key_id, window, hour, day, key_budget)
    count = 3 + len(head) + 1 + len(tail) + _SETTLE_ARGS
    return Run.first(count, "EVALSHA", sha, len(head) + 1 + len(tail), *head), Run.of(*tail)


# ARGV[5..10] of the settlement scripts, by (a ledger entry to write, the request failed):
# the TTLs of the marker and the spend counters, the two flags, the aggregates' TTLs.
# Last, after the request's own four (ARGV[1..4], packed per request in one call).
_SETTLE_FLAGS = {
    (cost, failed): Run.of(
        _ENTRY_MARKER_TTL,
        _SPEND_TTL,
        "1" if cost else "0",
        "1" if failed else "0",
        _HOUR_AGGREGATE_TTL,
        _DAY_AGGREGATE_TTL,
    )
    for cost in (False, True)
    for failed in (False, True)
}


@functools.lru_cache(maxsize=1024)
def _release_keys(account: str, window: int) -> tuple[str, ...]:
    """``lua/release.lua``'s KEYS."""
    return (
        schema.holds(account),
        schema.held(account),
        schema.tokens_window(account, window),
        schema.requests_window(account, window),
    )


def _member_keys(team: str, key_id: str, window: int) -> list[str]:
    """A team member's holds, held, requests and tokens counters of ``window``."""
    return [
        schema.member(team, key_id, "holds"),
        schema.member(team, key_id, "held"),
        schema.member(team, key_id, f"rpm:{window}"),
        schema.member(team, key_id, f"tpm:{window}"),
    ]


def ledger_argument(fields: dict[str, str] | list[str]) -> bytes:
    """A ledger entry's fields as the settlement scripts take them: one JSON array of
    name, value, name, value... (``lua/prelude/settle.lua`` decodes it with ``cjson``
    and writes the same fields, in the same order, as separate arguments did). One
    argument instead of two a field: the packer's cost is per argument. Fields already
    flat (``Charge.fields``) are that array as they are."""
    if type(fields) is list:
        return orjson.dumps(fields)
    return orjson.dumps(list(chain.from_iterable(cast(dict[str, str], fields).items())))


def _with_field(
    fields: dict[str, str] | list[str], name: str, value: str
) -> dict[str, str] | list[str]:
    """A copy of ``fields`` (``Charge.fields``) with ``name`` set to ``value``, as a dict's
    item assignment sets it: in its place if named already, else at the end."""
    if isinstance(fields, dict):
        return {**fields, name: value}
    names = fields[::2]
    if name not in names:
        return [*fields, name, value]
    copy = list(fields)
    copy[2 * names.index(name) + 1] = value
    return copy


def _script_step(script: Any, keys: Sequence[str], args: list[Any]) -> Command:
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


# The start of a lease's ZADD (four arguments) and ZREM (three), packed once: the
# command's array header, its name and the set's; the score and member follow.
_LEASE_ZADD = b"*4\r\n" + bulk(("ZADD", schema.LEASES))
_LEASE_ZREM = b"*3\r\n" + bulk(("ZREM", schema.LEASES))


def _lease_member(key_id: str, charge_id: str) -> str:
    return f"{key_id} {charge_id}"


def _parse(result: list[Any], now: float) -> Admitted | Refusal:
    reason = result[0]
    if reason == "ok":
        return Admitted(int(result[1]), int(result[2]), int(result[3]), int(result[4]))
    retry = 0.0
    if reason in ("requests", "tokens"):
        retry = WINDOW_SECONDS - (now % WINDOW_SECONDS)
    whose = str(result[3]) if len(result) > 3 else "key"
    return Refusal(str(reason), int(result[1]), int(result[2]), retry, whose)
