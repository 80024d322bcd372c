"""A2A tasks and contexts in Redis: per key, per agent, with their event streams, sealed
to where they are stored, kept the retention they are written with, listed for erasure."""

from __future__ import annotations

import asyncio
import gc
import os

import pytest

from gateway.store import Store, schema
from gateway.store.a2a_tasks import NO_ENTRY, StoredTask, TaskGone, TaskStore, next_entry
from gateway.store.cipher import ContentCipher, UnreadableContent

TTL = 60_000


def task(task_id: str, state: str = "TASK_STATE_WORKING") -> dict[str, object]:
    return {"id": task_id, "contextId": "c", "status": {"state": state}}


async def run(tasks: TaskStore, task_id: str) -> None:
    """A run of the task started: it holds the lease its appends need."""
    await tasks.save("k1", StoredTask("echo", task(task_id)), retention_ms=TTL, running=True)


async def test_a_task_is_the_creating_keys_alone_and_listed_newest_first(
    fake_store: Store,
) -> None:
    tasks = TaskStore(fake_store.redis)
    await tasks.save("k1", StoredTask("echo", task("t1")), retention_ms=TTL)
    await asyncio.sleep(0.002)
    await tasks.save("k1", StoredTask("echo", task("t2")), retention_ms=TTL)
    await tasks.save("k1", StoredTask("other", task("t3")), retention_ms=TTL)
    loaded = await tasks.load("k1", "t1")
    assert loaded == StoredTask("echo", task("t1"))
    assert await tasks.load("k2", "t1") is None  # another key finds nothing
    assert [t["id"] for t in await tasks.listed("k1", "echo")] == ["t2", "t1"]
    assert await tasks.listed("k2", "echo") == []
    ttl = await fake_store.redis.ttl("gw:{k1}:a2a:task:t1")
    assert 0 < ttl <= 60  # kept for the retention, no longer
    await fake_store.redis.delete("gw:{k1}:a2a:task:t1")  # as if it expired
    assert [t["id"] for t in await tasks.listed("k1", "echo")] == ["t2"]
    # Every task of the key, whatever its agent, is in its index for erasure, by expiry.
    index = await fake_store.redis.zrange(schema.a2a_task_index("k1"), 0, -1, withscores=True)
    assert sorted(i for i, _ in index) == ["t1", "t2", "t3"]
    assert await fake_store.redis.smembers(schema.a2a_task_lists("k1")) == {
        schema.a2a_tasks("k1", "echo"),
        schema.a2a_tasks("k1", "other"),
    }


async def test_each_write_keeps_the_retention_it_is_given(fake_store: Store) -> None:
    tasks = TaskStore(fake_store.redis)
    last = await tasks.save("k1", StoredTask("brief", task("t1")), [{"n": 1}], retention_ms=5_000)
    await tasks.save_context("k1", "c1", [{"type": "message"}], retention_ms=5_000)
    for name in (
        schema.a2a_task("k1", "t1"),
        schema.a2a_task_events("k1", "t1"),
        schema.a2a_context("k1", "c1"),
    ):
        assert 0 < await fake_store.redis.pttl(name) <= 5_000, name
    assert last == "0-1"


async def test_events_are_read_back_in_order_after_an_entry_and_wake_followers(
    fake_store: Store,
) -> None:
    tasks = TaskStore(fake_store.redis)
    assert await tasks.last_entry("k1", "t1") == NO_ENTRY
    await run(tasks, "t1")
    changed = tasks.changed("t1")
    last = await tasks.append("k1", "echo", "t1", [{"n": 1}, {"n": 2}], retention_ms=TTL, after="0")
    assert changed.is_set() and last == "0-2"
    events = await tasks.events_after("k1", "t1", "0")
    assert [e.data for e in events] == [{"n": 1}, {"n": 2}]
    assert [e.entry for e in events] == ["0-1", "0-2"]
    assert await tasks.last_entry("k1", "t1") == events[-1].entry
    after_first = await tasks.events_after("k1", "t1", events[0].entry)
    assert [e.data for e in after_first] == [{"n": 2}]
    # A task saved with its events: both at once.
    ended = StoredTask("echo", task("t1", "TASK_STATE_COMPLETED"))
    await tasks.save("k1", ended, [{"n": 3}], retention_ms=TTL, after=last)
    later = await tasks.events_after("k1", "t1", events[-1].entry)
    assert [e.data for e in later] == [{"n": 3}]
    # A follower's wake-up stays only while someone holds it (no append may ever come).
    waiting = tasks.changed("t2")
    assert tasks.changed("t2") is waiting  # followers of one task share it
    del waiting
    gc.collect()
    assert "t2" not in tasks._changed
    assert await tasks.events_after("k2", "t1", "0") == []


async def test_a_writer_behind_another_writes_after_its_events(fake_store: Store) -> None:
    """A cancel that raced the run added events the run did not know of: the run's go
    after them, none is lost or overwritten."""
    tasks = TaskStore(fake_store.redis)
    await run(tasks, "t1")
    await tasks.append("k1", "echo", "t1", [{"n": 1}], retention_ms=TTL, after="0")
    await tasks.append("k1", "echo", "t1", [{"n": 2}], retention_ms=TTL, after="0-1")
    last = await tasks.append("k1", "echo", "t1", [{"n": 3}], retention_ms=TTL, after="0-1")
    assert last == "0-3"
    assert [e.data for e in await tasks.events_after("k1", "t1", "0")] == [
        {"n": 1},
        {"n": 2},
        {"n": 3},
    ]
    # A stream whose ids Redis chose (written before the writer chose them) goes on.
    await fake_store.redis.xadd(schema.a2a_task_events("k1", "old"), {"e": "{}"})
    before = await tasks.last_entry("k1", "old")
    await run(tasks, "old")
    after = await tasks.append("k1", "echo", "old", [{"n": 1}], retention_ms=TTL, after="0")
    assert after == next_entry(before) and next_entry("0") == "0-1"


async def test_a_run_whose_lease_is_gone_writes_nothing_and_is_told(fake_store: Store) -> None:
    """A purge deletes the lease with the task: the run's next write, or its renewal,
    must not bring either back."""
    redis = fake_store.redis
    tasks = TaskStore(redis)
    last = await tasks.save(
        "k1", StoredTask("echo", task("t1")), [{"n": 1}], retention_ms=TTL, running=True
    )
    assert await tasks.running("k1", "t1")
    await redis.delete(
        schema.a2a_task("k1", "t1"),
        schema.a2a_task_events("k1", "t1"),
        schema.a2a_task_run("k1", "t1"),
    )
    await tasks.renew("k1", "t1")
    assert not await tasks.running("k1", "t1")
    with pytest.raises(TaskGone):
        await tasks.append("k1", "echo", "t1", [{"n": 2}], retention_ms=TTL, after=last)
    with pytest.raises(TaskGone):
        await tasks.save("k1", StoredTask("echo", task("t1")), retention_ms=TTL, running=False)
    assert await redis.keys("*t1*") == []
    # A cancel of a task no run holds (written by no run) is written.
    await tasks.save("k1", StoredTask("echo", task("t1", "TASK_STATE_CANCELED")), retention_ms=TTL)
    assert await tasks.load("k1", "t1") is not None


async def test_contexts_and_cancel_requests(fake_store: Store) -> None:
    tasks = TaskStore(fake_store.redis)
    assert await tasks.load_context("k1", "c1") is None
    items = [{"type": "message", "role": "user", "content": "hi"}]
    await tasks.save_context("k1", "c1", items, retention_ms=TTL)
    assert await tasks.load_context("k1", "c1") == items
    assert await tasks.load_context("k2", "c1") is None
    assert await fake_store.redis.zrange(schema.a2a_context_index("k1"), 0, -1) == ["c1"]
    assert not await tasks.cancel_requested("k1", "t1")
    await tasks.request_cancel("k1", "t1")
    assert await tasks.cancel_requested("k1", "t1")
    await tasks.forget_cancel("k1", "t1")
    assert not await tasks.cancel_requested("k1", "t1")


SECRET = "the merger with Initech closes on Friday"


async def test_sealed_to_its_place_and_plain_values_of_before_still_read(
    fake_store: Store,
) -> None:
    redis = fake_store.redis
    tasks = TaskStore(redis, ContentCipher(os.urandom(32)))
    secret_task = {**task("t1"), "history": [{"parts": [{"text": SECRET}]}]}
    await tasks.save("k1", StoredTask("echo", secret_task), [{"text": SECRET}], retention_ms=TTL)
    await tasks.save_context("k1", "c1", [{"content": SECRET}], retention_ms=TTL)
    values = [
        await redis.get(schema.a2a_task("k1", "t1")),
        await redis.get(schema.a2a_context("k1", "c1")),
        *[f["e"] for _, f in await redis.xrange(schema.a2a_task_events("k1", "t1"))],
    ]
    assert all(v.startswith("gwe1:") and "Initech" not in v for v in values)
    assert (await tasks.load("k1", "t1")) == StoredTask("echo", secret_task)
    assert [e.data for e in await tasks.events_after("k1", "t1", "0")] == [{"text": SECRET}]
    assert await tasks.load_context("k1", "c1") == [{"content": SECRET}]
    assert [t["id"] for t in await tasks.listed("k1", "echo")] == ["t1"]

    # Moved to another task (or entry), a sealed value does not open.
    await redis.set(schema.a2a_task("k1", "t2"), values[0])
    with pytest.raises(UnreadableContent):
        await tasks.load("k1", "t2")
    await redis.xadd(schema.a2a_task_events("k1", "t1"), {"e": values[2]}, id="0-9")
    with pytest.raises(UnreadableContent):
        await tasks.events_after("k1", "t1", "0-1")

    # A task stored in plain text before encryption was turned on reads as it was.
    plain = TaskStore(redis)
    await plain.save("k1", StoredTask("echo", task("t3")), [{"n": 1}], retention_ms=TTL)
    await plain.save_context("k1", "c3", [{"n": 1}], retention_ms=TTL)
    assert (await tasks.load("k1", "t3")) == StoredTask("echo", task("t3"))
    assert [e.data for e in await tasks.events_after("k1", "t3", "0")] == [{"n": 1}]
    assert await tasks.load_context("k1", "c3") == [{"n": 1}]
