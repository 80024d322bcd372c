"""A2A tasks and contexts in Redis: per key, per agent, with their event streams."""

from __future__ import annotations

import asyncio
import gc

from gateway.store import Store
from gateway.store.a2a_tasks import StoredTask, TaskStore


def task(task_id: str, state: str = "TASK_STATE_WORKING") -> dict[str, object]:
    return {"id": task_id, "contextId": "c", "status": {"state": state}}


async def test_a_task_is_the_creating_keys_alone_and_listed_newest_first(
    fake_store: Store,
) -> None:
    tasks = TaskStore(fake_store.redis, 60)
    await tasks.save("k1", StoredTask("echo", task("t1")))
    await asyncio.sleep(0.002)
    await tasks.save("k1", StoredTask("echo", task("t2")))
    await tasks.save("k1", StoredTask("other", task("t3")))
    loaded = await tasks.load("k1", "t1")
    assert loaded == StoredTask("echo", task("t1"))
    assert await tasks.load("k2", "t1") is None  # another key finds nothing
    assert [t["id"] for t in await tasks.listed("k1", "echo")] == ["t2", "t1"]
    assert await tasks.listed("k2", "echo") == []
    ttl = await fake_store.redis.ttl("gw:{k1}:a2a:task:t1")
    assert 0 < ttl <= 60  # kept for the retention, no longer
    await fake_store.redis.delete("gw:{k1}:a2a:task:t1")  # as if it expired
    assert [t["id"] for t in await tasks.listed("k1", "echo")] == ["t2"]


async def test_events_are_read_back_in_order_after_an_entry_and_wake_followers(
    fake_store: Store,
) -> None:
    tasks = TaskStore(fake_store.redis, 60)
    changed = tasks.changed("t1")
    assert await tasks.last_entry("k1", "t1") == "0"
    await tasks.append("k1", "t1", [{"n": 1}, {"n": 2}])
    assert changed.is_set()
    events = await tasks.events_after("k1", "t1", "0")
    assert [e.data for e in events] == [{"n": 1}, {"n": 2}]
    assert await tasks.last_entry("k1", "t1") == events[-1].entry
    after_first = await tasks.events_after("k1", "t1", events[0].entry)
    assert [e.data for e in after_first] == [{"n": 2}]
    # A task saved with its events: both at once.
    await tasks.save("k1", StoredTask("echo", task("t1", "TASK_STATE_COMPLETED")), [{"n": 3}])
    later = await tasks.events_after("k1", "t1", events[-1].entry)
    assert [e.data for e in later] == [{"n": 3}]
    # A follower's wake-up stays only while someone holds it (no append may ever come).
    waiting = tasks.changed("t2")
    assert tasks.changed("t2") is waiting  # followers of one task share it
    del waiting
    gc.collect()
    assert "t2" not in tasks._changed
    assert await tasks.events_after("k2", "t1", "0") == []


async def test_contexts_and_cancel_requests(fake_store: Store) -> None:
    tasks = TaskStore(fake_store.redis, 60)
    assert await tasks.load_context("k1", "c1") is None
    await tasks.save_context("k1", "c1", [{"type": "message", "role": "user", "content": "hi"}])
    assert await tasks.load_context("k1", "c1") == [
        {"type": "message", "role": "user", "content": "hi"}
    ]
    assert await tasks.load_context("k2", "c1") is None
    assert not await tasks.cancel_requested("k1", "t1")
    await tasks.request_cancel("k1", "t1")
    assert await tasks.cancel_requested("k1", "t1")
    await tasks.forget_cancel("k1", "t1")
    assert not await tasks.cancel_requested("k1", "t1")
