"""Teams across real gateway processes, on one Redis and on the three-node Redis Cluster:
a shared balance that many keys spend at once is never overspent, each key's cap holds,
the team's ledger sums to its balance, and every request is billed once or refused;
the same when a process is killed mid-stream and when a key moves between teams."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from gateway.store import Store, aggregates, schema
from gateway.store.holds import Charge, HoldRecord, Holds
from gateway.store.records import ApiKey, KeyLimits, Team
from gateway.store.teams import Teams
from tests.integration.processes import GatewayProcess, StartProcess
from tests.integration.support import eventually

CONFIG = """
backends:
  slow: {{type: echo, chunk_delay: {delay}}}
routes:
  slow:
    backend: slow
    pricing: {{input: 1, output: 2}}
    max_output_tokens: 20
metering:
  lease_seconds: {lease}
{redis}"""

TEXT = "one two three four five six seven eight nine ten"
BALANCE = 1_500  # each request holds about 60-80 credits: about 20 fit at once


@dataclass
class World:
    store: Store
    teams: Teams
    redis_url: str
    cluster: bool

    async def process(self, start: StartProcess, delay: float, lease: float) -> GatewayProcess:
        redis = "redis: {cluster: true}\n" if self.cluster else ""
        config = CONFIG.format(delay=delay, lease=lease, redis=redis)
        return await start_on(start, config, self.redis_url)


async def start_on(start: StartProcess, config: str, url: str) -> GatewayProcess:
    return await start(config, redis=url)  # type: ignore[call-arg]  # the fixture takes it


@pytest.fixture(params=["redis", "cluster"])
async def world(
    request: pytest.FixtureRequest, redis_client: aioredis.Redis, redis_url: str
) -> AsyncIterator[World]:
    if request.param == "redis":
        store = Store(redis_client)
        yield World(store, Teams(store), redis_url, False)
        return
    url: str = request.getfixturevalue("redis_cluster_url")
    client = RedisCluster.from_url(url, decode_responses=True)
    await client.flushall()
    store = Store(client)  # type: ignore[arg-type]  # a cluster client serves the same calls
    yield World(store, Teams(store), url, True)
    await client.aclose()


async def stream(http: aiohttp.ClientSession, gateway: GatewayProcess, secret: str) -> int:
    """Stream one request to its end; its status (200 once headers came, even if the
    process then died mid-stream)."""
    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": TEXT}]}
    headers = {"Authorization": f"Bearer {secret}"}
    try:
        async with http.post(f"{gateway.url}/v1/chat/completions", json=body, headers=headers) as r:
            status = r.status
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                await r.read()
            return status
    except aiohttp.ClientError:
        return 0  # never answered: the process was gone before it admitted anything


async def three_keys(world: World, team: Team) -> list[tuple[ApiKey, str]]:
    """A key with a daily budget, one with a concurrency cap, one without a cap."""
    caps = [KeyLimits(daily_budget=400), KeyLimits(max_concurrent=2), KeyLimits()]
    keys = [
        await world.store.create_key(f"k{i}", team=team.id, limits=c) for i, c in enumerate(caps)
    ]
    return keys


class Watch:
    """Samples the team's balance and the capped key's requests in flight while it runs."""

    def __init__(self, world: World, team: str, capped: str) -> None:
        self.world, self.team, self.capped = world, team, capped
        self.lowest, self.most_open = BALANCE, 0
        self._done = False
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        redis = self.world.store.redis
        while not self._done:
            self.lowest = min(self.lowest, await self.world.store.balance(self.team))
            opened = await redis.scard(schema.member(self.team, self.capped, "holds"))  # type: ignore[misc]
            self.most_open = max(self.most_open, int(opened))
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self._done = True
        await self._task


async def nothing_held(world: World, team: str) -> bool:
    return await world.store.held(team) == 0


async def team_books_balance(world: World, team: str, initial: int, billed: int) -> None:
    """The team's ledger sums to its balance, each request is charged once, and exactly
    the requests that were served are billed."""
    ledger = await world.store.ledger(team)
    balance = await world.store.balance(team)
    assert balance >= 0
    assert sum(e.amount for e in ledger) == balance
    usage = [e for e in ledger if e.kind == "usage"]
    assert sum(e.amount for e in usage) == balance - initial
    ids = [e.request_id for e in usage]
    assert len(ids) == len(set(ids)) == billed
    assert all(e.key_id for e in usage)


async def test_keys_of_a_team_spend_its_balance_at_once_without_overspending(
    world: World, gateway_processes: StartProcess
) -> None:
    a = await world.process(gateway_processes, 0.01, 30)
    b = await world.process(gateway_processes, 0.01, 30)
    team = await world.teams.create("shared", balance=BALANCE)
    keys = await three_keys(world, team)
    watch = Watch(world, team.id, keys[1][0].id)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        statuses = await asyncio.gather(
            *(stream(http, (a, b)[i % 2], keys[i % 3][1]) for i in range(200))
        )
    await eventually(lambda: nothing_held(world, team.id), within=10)
    await watch.stop()

    assert set(statuses) <= {200, 402, 429}
    assert statuses.count(200) > 0 and statuses.count(402) > 0
    assert watch.lowest >= 0 and watch.most_open <= 2
    await team_books_balance(world, team.id, BALANCE, statuses.count(200))
    usage = [e for e in await world.store.ledger(team.id) if e.kind == "usage"]
    assert -sum(e.amount for e in usage if e.key_id == keys[0][0].id) <= 400  # its budget
    assert {e.key_id for e in usage} <= {k.id for k, _ in keys}


async def test_a_killed_process_loses_no_team_charge_and_doubles_none(
    world: World, gateway_processes: StartProcess
) -> None:
    doomed = await world.process(gateway_processes, 0.3, 1.5)
    survivor = await world.process(gateway_processes, 0.3, 1.5)
    team = await world.teams.create("victims", balance=BALANCE)
    keys = await three_keys(world, team)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        calls = [
            asyncio.create_task(stream(http, (doomed, survivor)[i % 2], keys[i % 3][1]))
            for i in range(60)
        ]
        await eventually(lambda: _some_held(world, team.id), within=5)
        await asyncio.sleep(1.0)  # output streamed; a renewal recorded it
        doomed.kill()
        statuses = await asyncio.gather(*calls)
    await eventually(lambda: nothing_held(world, team.id), within=10)
    await asyncio.sleep(1.5)  # more reaper passes change nothing

    assert set(statuses) <= {200, 402, 429}
    usage = [e for e in await world.store.ledger(team.id) if e.kind == "usage"]
    assert any(e.reaped for e in usage)  # the dead process's streams, settled by the survivor
    await team_books_balance(world, team.id, BALANCE, statuses.count(200))
    assert survivor.proc.poll() is None


async def test_a_key_moves_between_teams_while_the_others_spend(
    world: World, gateway_processes: StartProcess
) -> None:
    a = await world.process(gateway_processes, 0.02, 30)
    b = await world.process(gateway_processes, 0.02, 30)
    first = await world.teams.create("first", balance=BALANCE)
    second = await world.teams.create("second", balance=BALANCE)
    keys = await three_keys(world, first)
    mover, mover_secret = keys[2]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        before = [await stream(http, a, mover_secret) for _ in range(3)]
        spending = [
            asyncio.create_task(stream(http, (a, b)[i % 2], keys[i % 2][1])) for i in range(150)
        ]
        await eventually(lambda: _some_held(world, first.id), within=5)
        moved = await world.teams.move(mover.id, second.id, actor="test")
        assert moved.team == second.id
        await asyncio.sleep(1.1)  # every process's auth cache has the new team
        after = await asyncio.gather(
            *(stream(http, (a, b)[i % 2], mover_secret) for i in range(30))
        )
        statuses = await asyncio.gather(*spending)
    await eventually(lambda: nothing_held(world, first.id), within=10)
    await eventually(lambda: nothing_held(world, second.id), within=10)

    assert before == [200] * 3 and set(after) <= {200, 402}
    assert set(statuses) <= {200, 402, 429}
    await team_books_balance(world, first.id, BALANCE, 3 + statuses.count(200))
    await team_books_balance(world, second.id, BALANCE, after.count(200))
    second_usage = [e for e in await world.store.ledger(second.id) if e.kind == "usage"]
    assert {e.key_id for e in second_usage} == {mover.id}
    assert (await world.store.audit_log(limit=1))[0].action == "key.move"


async def _some_held(world: World, team: str) -> bool:
    return await world.store.held(team) > 0


async def _spend(world: World, key: ApiKey, credits: int) -> None:
    """One request of ``key`` admitted and settled at ``credits``, by the gateway's code."""
    key = await world.store.get_key(key.id)  # its team and limits now, as auth reads them
    now = time.time()
    held = HoldRecord(500, 50, now + 30, uuid.uuid4().hex, key.id, "echo", "", now,
                      team=key.team, key_budget=key.limits.budgeted)  # fmt: skip
    holds, charge = Holds(world.store.redis, cluster=world.cluster), uuid.uuid4().hex
    await holds.admit(charge, held, key.limits, True, None, key.team_limits)
    fields = {"kind": "usage", "request_id": held.request_id, "agent": "echo",
              "input_tokens": "7", "output_tokens": "3"}  # fmt: skip
    assert await holds.settle(Charge(held, charge, credits, 10, fields, route=False))


async def test_a_keys_aggregates_count_its_spend_alone_and_in_every_team_it_was_in(
    world: World,
) -> None:
    """Alone, in one team, moved to another, moved out: the key's hours and days count
    every request; each team's only what was spent in it; the books still balance."""
    first = await world.teams.create("first", balance=10_000)
    second = await world.teams.create("second", balance=10_000)
    key, _ = await world.store.create_key("wanderer", balance=10_000)
    spent = [(None, 11), (first.id, 13), (first.id, 17), (second.id, 19), (None, 23)]
    for team, credits in spent:
        if (await world.store.get_key(key.id)).team != (team or ""):
            await world.teams.move(key.id, team, wait=0)
        await _spend(world, key, credits)

    for period in aggregates.PERIODS:
        mine = await aggregates.read_key(world.store.redis, await world.store.get_key(key.id),
                                         period, 2)  # fmt: skip
        assert mine.total.credits == sum(c for _, c in spent)
        assert mine.total.requests == len(spent)
        assert (mine.total.input_tokens, mine.total.output_tokens) == (35, 15)
        if period == "day":
            assert dict(mine.by_agent)["echo"].credits == sum(c for _, c in spent)
        for team in (first, second):
            theirs = await aggregates.read_team(world.store.redis, team.id, period, 2)
            assert theirs.total.credits == sum(c for t, c in spent if t == team.id)
    for account in (key.id, first.id, second.id):
        ledger = await world.store.ledger(account)
        assert sum(e.amount for e in ledger) == await world.store.balance(account)
        assert all(isinstance(e.amount, int) for e in ledger)
    assert await world.store.balance(first.id) == 10_000 - 30
