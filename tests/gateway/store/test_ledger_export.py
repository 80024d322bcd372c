from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.store import ApiKey, Store, schema
from gateway.store.holds import Charge, HoldRecord, Holds
from gateway.store.ledger_export import (
    CLOCK_SLACK_MS,
    CSV_COLUMNS,
    LedgerQuery,
    csv_record,
    entries,
    json_array,
    key_entries,
    key_latest,
    parse_time,
    render,
)
from gateway.store.records import LedgerEntry
from gateway.store.teams import Teams

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


async def add(
    store: Store, key_id: str, at: float, *, kind: str = "usage", skew: float = 0.0, **extra: str
) -> str:
    """Append an entry whose ``at`` is ``at`` and whose stream id is ``at + skew``."""
    fields = {"kind": kind, "at": repr(at), "amount": "-5", "balance": "95", **extra}
    if kind == "usage":
        fields = {
            "request_id": "req_1",
            "agent": "echo",
            "backend": "echo",
            "input_tokens": "3",
            "output_tokens": "4",
            "estimated": "0",
            "held": "10",
            **fields,
        }
    stream_id = f"{int((at + skew) * 1000)}-*"
    r: Any = store.redis
    return str(await r.xadd(schema.ledger(key_id), fields, id=stream_id))


async def collect(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


async def ids(store: Store, key_id: str, query: LedgerQuery, **kw: Any) -> list[str]:
    return [e.id for e in await collect(entries(store, key_id, query, **kw))]


def test_parse_time_takes_unix_seconds_and_iso_8601() -> None:
    assert parse_time("1767225600") == T0
    assert parse_time("1767225600.5") == T0 + 0.5
    assert parse_time("2026-01-01T00:00:00Z") == T0
    assert parse_time("2026-01-01") == T0  # naive means UTC
    assert parse_time("2026-01-01T01:00:00+01:00") == T0
    for bad in ("yesterday", "", "-5", "nan", "inf"):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_query_rejects_unknown_kinds_and_bad_limits() -> None:
    with pytest.raises(ValueError):
        LedgerQuery(kind="refund")
    with pytest.raises(ValueError):
        LedgerQuery(limit=0)


async def test_filters_by_agent_kind_and_time(fake_store: Store) -> None:
    a = await add(fake_store, "k", T0, agent="echo")
    b = await add(fake_store, "k", T0 + 10, agent="other")
    c = await add(fake_store, "k", T0 + 20, kind="credit", note="top-up")
    d = await add(fake_store, "k", T0 + 30, agent="echo")
    assert await ids(fake_store, "k", LedgerQuery()) == [a, b, c, d]
    assert await ids(fake_store, "k", LedgerQuery(agent="echo")) == [a, d]
    assert await ids(fake_store, "k", LedgerQuery(kind="credit")) == [c]
    assert await ids(fake_store, "k", LedgerQuery(kind="usage")) == [a, b, d]
    # since is inclusive, until exclusive
    assert await ids(fake_store, "k", LedgerQuery(since=T0 + 10, until=T0 + 30)) == [b, c]
    assert await ids(fake_store, "k", LedgerQuery(since=T0 + 10, kind="usage")) == [b, d]
    assert await ids(fake_store, "k", LedgerQuery(agent="echo", limit=1)) == [a]
    assert await ids(fake_store, "other-key", LedgerQuery()) == []


async def test_time_range_narrows_the_scan_by_stream_id(fake_store: Store) -> None:
    calls: list[tuple[Any, ...]] = []
    real = fake_store.redis.xrange

    async def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return await real(*args, **kwargs)

    fake_store.redis.xrange = spy  # type: ignore[method-assign]
    await ids(fake_store, "k", LedgerQuery(since=T0, until=T0 + 60))
    _, start, end = calls[0]
    assert start == f"{int(T0 * 1000) - CLOCK_SLACK_MS}-0"
    assert end == f"{int((T0 + 60) * 1000) + CLOCK_SLACK_MS}"
    calls.clear()
    await ids(fake_store, "k", LedgerQuery(agent="x"))
    assert calls[0][1:] == ("-", "+")


async def test_at_decides_even_when_the_redis_clock_differs(fake_store: Store) -> None:
    early = await add(fake_store, "k", T0 + 100, skew=-120)  # Redis clock 2 min behind
    late = await add(fake_store, "k", T0 + 200, skew=+120)  # Redis clock 2 min ahead
    far = await add(fake_store, "k", T0 + 5000)
    assert await ids(fake_store, "k", LedgerQuery(since=T0 + 100, until=T0 + 201)) == [early, late]
    assert await ids(fake_store, "k", LedgerQuery(since=T0 + 150)) == [late, far]


async def test_pages_through_a_large_ledger(fake_store: Store) -> None:
    written = [await add(fake_store, "k", T0 + i) for i in range(25)]
    calls = 0
    real = fake_store.redis.xrange

    async def spy(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        assert kwargs["count"] == 10
        return await real(*args, **kwargs)

    fake_store.redis.xrange = spy  # type: ignore[method-assign]
    assert await ids(fake_store, "k", LedgerQuery(), page_size=10) == written
    assert calls == 3
    calls = 0
    assert await ids(fake_store, "k", LedgerQuery(limit=12), page_size=10) == written[:12]
    assert calls == 2  # stops once the limit is reached


async def test_paging_keeps_entries_of_the_same_millisecond(fake_store: Store) -> None:
    written = [await add(fake_store, "k", T0) for _ in range(7)]  # ids T0-0 .. T0-6
    assert await ids(fake_store, "k", LedgerQuery(), page_size=2) == written


async def test_jsonl_and_json_render_the_entry_records(fake_store: Store) -> None:
    await add(fake_store, "k", T0, agent="echo")
    await add(fake_store, "k", T0 + 1, kind="credit", note="top-up")
    expected = [e.to_json() for e in await collect(entries(fake_store, "k", LedgerQuery()))]
    jsonl = "".join(await collect(render(entries(fake_store, "k", LedgerQuery()), "jsonl")))
    assert [json.loads(line) for line in jsonl.splitlines()] == expected
    compact = "".join(await collect(render(entries(fake_store, "k", LedgerQuery()), "json")))
    assert json.loads(compact) == expected
    pretty = "".join(
        await collect(json_array(entries(fake_store, "k", LedgerQuery()), pretty=True))
    )
    assert json.loads(pretty) == expected and pretty.startswith("[\n  {\n")


async def test_empty_exports(fake_store: Store) -> None:
    def render_empty(fmt: str) -> AsyncIterator[str]:
        return render(entries(fake_store, "none", LedgerQuery()), fmt)

    assert "".join(await collect(render_empty("json"))) == "[]\n"
    assert "".join(await collect(render_empty("jsonl"))) == ""
    assert "".join(await collect(render_empty("csv"))).strip() == ",".join(CSV_COLUMNS)
    with pytest.raises(ValueError):
        await collect(render_empty("xml"))


async def test_csv_has_fixed_columns_and_defuses_formulas(fake_store: Store) -> None:
    await fake_store.create_key("x")  # irrelevant key, to show keys do not mix
    u = await add(fake_store, "k", T0 + 0.25, agent="echo", reasoning_tokens="2", reaped="1")
    c = await add(fake_store, "k", T0 + 1, kind="credit", note='=HYPERLINK("x"), "quoted"')
    text = "".join(await collect(render(entries(fake_store, "k", LedgerQuery()), "csv")))
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    usage, credit = list(reader)
    assert usage["id"] == u and usage["kind"] == "usage"
    assert usage["at"] == "2026-01-01T00:00:00.250000+00:00"
    assert (usage["input_tokens"], usage["output_tokens"], usage["reasoning_tokens"]) == (
        "3",
        "4",
        "2",
    )
    assert (usage["estimated"], usage["reaped"], usage["held"]) == ("false", "true", "10")
    assert (usage["amount"], usage["balance"], usage["agent"]) == ("-5", "95", "echo")
    assert credit["id"] == c and credit["kind"] == "credit"
    assert credit["input_tokens"] == credit["estimated"] == credit["agent"] == ""
    assert credit["note"] == "'" + '=HYPERLINK("x"), "quoted"'  # never run as a formula


async def test_a_keys_entries_follow_it_into_and_out_of_teams(redis_client: Any) -> None:
    """``gateway usage KEY``: its own ledger's entries and its entries in every team's it
    has been in, oldest first, after it moved out too; the others' are not its."""
    store = Store(redis_client)
    teams = Teams(store)
    team = await teams.create("t", balance=1_000)
    key, _ = await store.create_key("wanderer", balance=500)
    other, _ = await store.create_key("other", team=team.id)
    holds = Holds(redis_client)

    async def spend(of: ApiKey, credits: int) -> None:
        of = await store.get_key(of.id)
        now = time.time()
        held = HoldRecord(100, 10, now + 30, uuid.uuid4().hex, of.id, "echo", "", now,
                          team=of.team)  # fmt: skip
        charge = uuid.uuid4().hex
        await holds.admit(charge, held, of.limits, True, None, of.team_limits)
        fields = {"kind": "usage", "request_id": held.request_id, "agent": "echo"}
        await holds.settle(Charge(held, charge, credits, 10, fields, route=False))

    await spend(key, 1)
    await teams.move(key.id, team.id, wait=0)
    await spend(key, 2)
    await spend(other, 50)
    await teams.move(key.id, None, wait=0)
    await spend(key, 3)

    found = [e async for e in key_entries(store, await store.get_key(key.id), LedgerQuery())]
    assert [e.amount for e in found] == [500, -1, -2, -3]  # in the order they happened
    usage = LedgerQuery(kind="usage", limit=2)
    assert [e.amount for e in [e async for e in key_entries(store, key, usage)]] == [-1, -2]
    # The console's key page: the newest first, from every place alike.
    newest = await key_latest(store, await store.get_key(key.id), LedgerQuery(), most=3)
    assert [e.amount for e in newest] == [-3, -2, -1]


def test_csv_names_the_key_of_a_team_ledgers_entry() -> None:
    """A team's ledger names the key of each request (``key_id``, as json and jsonl do):
    the CSV export keeps it, in a last column, so the existing columns keep their places."""
    assert CSV_COLUMNS[-1] == "key_id"
    spent = LedgerEntry(id="1-0", kind="usage", amount=-5, balance=95, at=T0, key_id="key_a")
    topped = LedgerEntry(id="2-0", kind="credit", amount=5, balance=100, at=T0)
    assert (csv_record(spent)["key_id"], csv_record(topped)["key_id"]) == ("key_a", "")
