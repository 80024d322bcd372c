"""Teams on a real Redis: admission and settlement of a team's keys in one script, the
team's ledger, key caps inside the team's limits, and moving a key between teams."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis import asyncio as aioredis

from gateway.errors import InvalidRequest, NotFound
from gateway.store import Store, schema
from gateway.store.holds import Admitted, Charge, HoldRecord, Holds, Refusal, window_of
from gateway.store.records import ApiKey, KeyLimits
from gateway.store.teams import Teams


def record(key: ApiKey, credits: int = 100, tokens: int = 50) -> HoldRecord:
    now = time.time()
    return HoldRecord(
        credits,
        tokens,
        now + 30,
        uuid.uuid4().hex,
        key.id,
        "echo",
        "",
        now,
        team=key.team,
        key_budget=key.limits.budgeted,
    )


async def admit(holds: Holds, key: ApiKey, credits: int = 100) -> tuple[str, HoldRecord, object]:
    charge_id, held = uuid.uuid4().hex, record(key, credits)
    result = await holds.admit(charge_id, held, key.limits, True, None, team_limits=key.team_limits)
    return charge_id, held, result


async def settle(holds: Holds, held: HoldRecord, charge_id: str, credits: int) -> bool:
    fields = {"kind": "usage", "request_id": held.request_id, "agent": "echo"}
    return await holds.settle(Charge(held, charge_id, credits, 40, fields, route=False))


@pytest.fixture
async def world(redis_client: aioredis.Redis) -> tuple[Store, Teams, Holds]:
    store = Store(redis_client)
    return store, Teams(store), Holds(redis_client)


async def test_a_team_key_holds_and_charges_the_teams_balance(
    world: tuple[Store, Teams, Holds],
) -> None:
    store, teams, holds = world
    team = await teams.create("research", balance=1_000)
    key, _ = await store.create_key("ci", team=team.id)
    key = await store.get_key(key.id)
    assert key.team == team.id and await teams.members(team.id) == [key.id]

    charge_id, held, result = await admit(holds, key, 300)
    assert isinstance(result, Admitted) and result.balance == 1_000 and result.held == 300
    assert await store.held(team.id) == 300
    assert await settle(holds, held, charge_id, 120)
    assert not await settle(holds, held, charge_id, 120)  # once per charge
    assert await store.balance(team.id) == 880 and await store.held(team.id) == 0
    assert await store.balance(key.id) == 0  # the key's own balance is untouched
    ledger = await store.ledger(team.id)
    assert sum(e.amount for e in ledger) == 880
    assert [e.key_id for e in ledger if e.kind == "usage"] == [key.id]
    assert [e.amount for e in await teams.usage(key)] == [-120]
    assert await teams.in_flight(key) == 0


async def test_the_team_balance_refuses_and_names_the_team(
    world: tuple[Store, Teams, Holds],
) -> None:
    store, teams, holds = world
    team = await teams.create("small", balance=250)
    a, _ = await store.create_key("a", team=team.id)
    b, _ = await store.create_key("b", team=team.id)
    assert isinstance((await admit(holds, a, 200))[2], Admitted)
    refused = (await admit(holds, b, 100))[2]
    assert isinstance(refused, Refusal)
    assert (refused.reason, refused.whose, refused.current, refused.limit) == (
        "quota", "team", 250, 200
    )  # fmt: skip
    assert await store.held(team.id) == 200


async def test_key_caps_hold_inside_the_teams_limits(world: tuple[Store, Teams, Holds]) -> None:
    store, teams, holds = world
    team = await teams.create("t", balance=10**6, limits=KeyLimits(max_concurrent=3))
    capped, _ = await store.create_key("capped", team=team.id, limits=KeyLimits(max_concurrent=1))
    other, _ = await store.create_key("other", team=team.id)
    capped, other = await store.get_key(capped.id), await store.get_key(other.id)
    assert capped.team_limits == KeyLimits(max_concurrent=3)

    assert isinstance((await admit(holds, capped))[2], Admitted)
    own = (await admit(holds, capped))[2]
    assert isinstance(own, Refusal) and (own.reason, own.whose) == ("concurrency", "key")
    assert isinstance((await admit(holds, other))[2], Admitted)
    assert isinstance((await admit(holds, other))[2], Admitted)
    teams_cap = (await admit(holds, other))[2]
    assert isinstance(teams_cap, Refusal) and (teams_cap.reason, teams_cap.whose) == (
        "concurrency", "team"
    )  # fmt: skip


async def test_budgets_of_key_and_team(world: tuple[Store, Teams, Holds]) -> None:
    store, teams, holds = world
    team = await teams.create("t", balance=10**6, limits=KeyLimits(daily_budget=500))
    key, _ = await store.create_key("k", team=team.id, limits=KeyLimits(daily_budget=300))
    key = await store.get_key(key.id)
    charge_id, held, result = await admit(holds, key, 250)
    assert isinstance(result, Admitted)
    assert await holds.redis.get(schema.member(team.id, key.id, "held")) == "250"
    await settle(holds, held, charge_id, 250)
    assert await holds.redis.get(schema.member(team.id, key.id, "held")) == "0"
    assert await holds.redis.get(schema.member(team.id, key.id, f"spend:d:{_today()}")) == "250"
    refusal = (await admit(holds, key, 100))[2]
    assert isinstance(refusal, Refusal) and (refusal.reason, refusal.whose) == (
        "daily_budget", "key"
    )  # fmt: skip
    other, _ = await store.create_key("o", team=team.id)
    other = await store.get_key(other.id)
    assert isinstance((await admit(holds, other, 200))[2], Admitted)
    refusal = (await admit(holds, other, 100))[2]
    assert isinstance(refusal, Refusal) and (refusal.reason, refusal.whose) == (
        "daily_budget", "team"
    )  # fmt: skip


async def test_a_refused_route_releases_the_team_hold(world: tuple[Store, Teams, Holds]) -> None:
    store, teams, holds = world
    team = await teams.create("t", balance=10**6)
    key, _ = await store.create_key(
        "k", team=team.id, limits=KeyLimits(rpm=100, daily_budget=10**6)
    )
    key = await store.get_key(key.id)
    route = KeyLimits(max_concurrent=1)
    first = record(key)
    assert isinstance(
        await holds.admit("c1", first, key.limits, True, route, key.team_limits), Admitted
    )
    second = record(key)
    refused = await holds.admit("c2", second, key.limits, True, route, key.team_limits)
    assert isinstance(refused, Refusal) and refused.reason == "concurrency"
    assert await store.held(team.id) == 100 and await teams.in_flight(key) == 1
    window = window_of(second.started_at)
    requests = await holds.redis.get(schema.member(team.id, key.id, f"rpm:{window}"))
    assert requests == "1"  # the refused request is uncounted, by the key
    assert await holds.redis.get(schema.requests_window(team.id, window)) == "1"  # and team
    assert await holds.redis.get(schema.member(team.id, key.id, "held")) == "100"


async def test_renew_and_reap_find_a_team_hold(world: tuple[Store, Teams, Holds]) -> None:
    store, teams, holds = world
    team = await teams.create("t", balance=10**6)
    key, _ = await store.create_key("k", team=team.id)
    key = await store.get_key(key.id)
    charge_id, held, _ = await admit(holds, key)
    await holds.renew([(charge_id, held)])
    expired = await holds.expired(time.time() + 60)
    assert (team.id, charge_id, held) in expired


async def test_moving_a_key_is_refused_while_it_has_requests_in_flight(
    world: tuple[Store, Teams, Holds],
) -> None:
    store, teams, holds = world
    first = await teams.create("first", balance=10**6)
    second = await teams.create("second", balance=10**6)
    key, _ = await store.create_key("k", team=first.id, limits=KeyLimits(rpm=3))
    key = await store.get_key(key.id)
    charge_id, held, _ = await admit(holds, key)
    with pytest.raises(InvalidRequest) as busy:
        await teams.move(key.id, second.id, wait=0)
    assert busy.value.status == 409 and busy.value.code == "key_busy"
    assert not (await store.get_key(key.id)).moving  # the refused move left no mark
    await settle(holds, held, charge_id, 10)
    assert (await teams.move(key.id, second.id, wait=0)).team == second.id


async def test_a_moved_key_takes_its_counters_and_spends_the_new_team(
    world: tuple[Store, Teams, Holds],
) -> None:
    store, teams, holds = world
    first = await teams.create("first", balance=10**6)
    second = await teams.create("second", balance=10**6)
    key, _ = await store.create_key("k", team=first.id, limits=KeyLimits(rpm=2))
    key = await store.get_key(key.id)
    charge_id, held, _ = await admit(holds, key)
    await settle(holds, held, charge_id, 10)

    moving = asyncio.create_task(teams.move(key.id, second.id, wait=0.2, actor="cli:test"))
    await asyncio.sleep(0.05)
    assert (await store.get_key(key.id)).moving  # admission refuses it meanwhile
    moved = await moving
    assert moved.team == second.id and not moved.moving
    assert await teams.members(first.id) == [] and await teams.members(second.id) == [moved.id]
    assert (await store.audit_log(limit=1))[0].action == "key.move"

    assert isinstance((await admit(holds, moved))[2], Admitted)  # its second request
    third = (await admit(holds, moved))[2]
    assert isinstance(third, Refusal) and third.reason == "requests"  # the count came along
    assert await store.held(second.id) == 100 and await store.held(first.id) == 0

    with pytest.raises(InvalidRequest) as busy:  # that second request is in flight
        await teams.move(key.id, None, wait=0)
    assert busy.value.code == "key_busy"


async def test_moving_out_of_a_team_returns_to_the_keys_own_balance(
    world: tuple[Store, Teams, Holds],
) -> None:
    store, teams, holds = world
    team = await teams.create("t", balance=10**6)
    key, _ = await store.create_key("k", balance=500)
    moved = await teams.move(key.id, team.id, wait=0)
    assert moved.team == team.id
    back = await teams.move(key.id, None, wait=0)
    assert back.team == "" and await teams.members(team.id) == []
    charge_id, held, result = await admit(holds, back, 100)
    assert isinstance(result, Admitted) and result.balance == 500
    await settle(holds, held, charge_id, 100)
    assert await store.balance(key.id) == 400 and await store.balance(team.id) == 10**6


async def test_teams_refuse_what_does_not_exist(world: tuple[Store, Teams, Holds]) -> None:
    store, teams, _ = world
    with pytest.raises(NotFound):
        await store.create_key("k", team="team_missing")
    with pytest.raises(NotFound):
        await teams.credit("team_missing", 5)
    team = await teams.create("t")
    with pytest.raises(InvalidRequest):
        await store.create_key("k", team=team.id, balance=5)
    key, _ = await store.create_key("k")
    with pytest.raises(NotFound):
        await teams.move(key.id, "team_missing", wait=0)
    assert [t.id for t in await teams.all()] == [team.id]


def _today() -> str:
    return time.strftime("%Y%m%d", time.gmtime())


# The books of a team as properties: any interleaving of admissions, settlements (at most
# what was held), releases and moves of its keys leaves them true.

BALANCE = 700  # a few requests' worth: the balance, not only the caps, refuses some
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("admit"), st.integers(0, 2), st.integers(1, 400)),
        st.tuples(st.just("settle"), st.integers(0, 30), st.floats(0, 1)),
        st.tuples(st.just("release"), st.integers(0, 30), st.just(0.0)),
        st.tuples(st.just("move"), st.integers(0, 2), st.just(0.0)),
    ),
    min_size=10,
    max_size=60,
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(ops=OPS)
def test_the_team_books_hold_under_any_interleaving(
    redis_url: str, ops: list[tuple[str, int, float]]
) -> None:
    asyncio.run(_books(redis_url, ops))


async def _books(redis_url: str, ops: list[tuple[str, int, float]]) -> None:
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    await redis.flushdb()
    store, holds = Store(redis), Holds(redis)
    teams = Teams(store)
    try:
        team = await teams.create("t", balance=BALANCE, limits=KeyLimits(max_concurrent=4))
        other = await teams.create("o", balance=0)
        caps = [KeyLimits(max_concurrent=2), KeyLimits(daily_budget=600), KeyLimits()]
        keys = [
            await store.get_key((await store.create_key(f"k{i}", team=team.id, limits=c))[0].id)
            for i, c in enumerate(caps)
        ]
        open_: list[tuple[str, HoldRecord]] = []
        charged = 0
        for op, n, share in ops:
            if op == "admit":
                key = keys[n]
                if key.team != team.id:
                    continue
                charge_id, held, result = await admit(holds, key, credits=int(share))
                if isinstance(result, Admitted):
                    open_.append((charge_id, held))
            elif op in ("settle", "release") and open_:
                charge_id, held = open_.pop(n % len(open_))
                if op == "settle":
                    credits = int(held.credits * share)
                    assert await settle(holds, held, charge_id, credits)
                    charged += credits
                else:
                    await holds.release(held, charge_id, key=True, route=False)
            elif op == "move":
                key = keys[n]
                target = other.id if key.team == team.id else team.id
                if any(h.key_id == key.id for _, h in open_):
                    with pytest.raises(InvalidRequest):
                        await teams.move(key.id, target, wait=0)
                else:
                    keys[n] = await teams.move(key.id, target, wait=0)
            await _check(store, team.id, keys, open_, BALANCE - charged)
    finally:
        await redis.aclose()


async def _check(
    store: Store, team: str, keys: list[ApiKey], open_: list[tuple[str, HoldRecord]], balance: int
) -> None:
    redis = store.redis
    assert await store.balance(team) == balance >= 0
    ledger = await store.ledger(team)
    assert sum(e.amount for e in ledger) == balance
    records = {
        c: HoldRecord.decode(r) for c, r in (await redis.hgetall(schema.holds(team))).items()
    }
    assert set(records) == {c for c, _ in open_}
    assert await store.held(team) == sum(r.credits for r in records.values())
    assert len(records) <= 4  # the team's max_concurrent
    for key in keys:
        mine = {c for c, r in records.items() if r.key_id == key.id}
        assert await redis.smembers(schema.member(team, key.id, "holds")) == mine
    assert len([r for r in records.values() if r.key_id == keys[0].id]) <= 2  # its own cap
    budgeted = keys[1].id
    spent = -sum(e.amount for e in ledger if e.key_id == budgeted)
    held = sum(r.credits for r in records.values() if r.key_id == budgeted)
    assert spent + held <= 600  # its daily budget, spend and holds together
    assert int(await redis.get(schema.member(team, budgeted, "held")) or 0) == held
