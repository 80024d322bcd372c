"""The key catalogue: search, sort and pages, read a page at a time; keys near limits."""

from __future__ import annotations

import time

from gateway.store import Store, catalogue, schema
from gateway.store.records import KeyLimits


async def test_pages_sorts_and_search(fake_store: Store) -> None:
    made = [(await fake_store.create_key(f"team-{i:02d}"))[0] for i in range(12)]
    await fake_store.create_key("Alice <b>")
    first = await catalogue.page(fake_store.redis, limit=5)
    assert first.total == 13 and len(first.rows) == 5
    assert first.rows[0].key.name == "Alice <b>"  # newest first
    oldest = await catalogue.page(fake_store.redis, sort="oldest", offset=10, limit=5)
    assert [r.key.name for r in oldest.rows] == ["team-10", "team-11", "Alice <b>"]
    by_name = await catalogue.page(fake_store.redis, sort="name", limit=2)
    assert [r.key.name for r in by_name.rows] == ["Alice <b>", "team-00"]
    found = await catalogue.page(fake_store.redis, query="AM-1", sort="name")
    assert [r.key.name for r in found.rows] == ["team-10", "team-11"] and found.total == 2
    by_id = await catalogue.page(fake_store.redis, query=made[3].id)
    assert [r.key.id for r in by_id.rows] == [made[3].id]
    glob = await catalogue.page(fake_store.redis, query="*")
    assert glob.total == 0  # matched literally


async def test_keys_made_before_the_catalogue_are_indexed_once(fake_store: Store) -> None:
    key, _ = await fake_store.create_key("old")
    await fake_store.redis.delete(schema.KEYS_BY_CREATED, schema.KEYS_BY_TEXT)
    assert (await catalogue.page(fake_store.redis)).rows[0].key.id == key.id
    assert await catalogue.reindex(fake_store.redis) == 0


async def test_near_limits(fake_store: Store) -> None:
    key, _ = await fake_store.create_key("k", limits=KeyLimits(daily_budget=100))
    calm, _ = await fake_store.create_key("c", limits=KeyLimits(daily_budget=10_000))
    await fake_store.create_key("free")
    day = time.strftime("%Y%m%d", time.gmtime())
    await fake_store.redis.set(schema.spend_day(key.id, day), 85)
    near = await catalogue.near_limits(fake_store.redis)
    assert [n.to_json() for n in near] == [
        {"id": key.id, "limit": "daily_budget", "used": 85, "of": 100}
    ]
    await fake_store.set_limits(calm.id, KeyLimits())
    assert not await fake_store.redis.sismember(schema.KEYS_LIMITED, calm.id)
