"""``gateway.store.erasure``: a key's stored conversations erased in batches, resumable and
idempotent, in bounded memory; its record, balance and ledger stay."""

from __future__ import annotations

import tracemalloc

import pytest
from redis import asyncio as aioredis

from gateway.errors import NotFound
from gateway.settings import ResponsesSettings
from gateway.store import Store, schema
from gateway.store.a2a_tasks import StoredTask, TaskStore
from gateway.store.erasure import A2A_CONTEXTS, A2A_TASKS, RESPONSES, StoredKind, purge_key
from gateway.store.response_runs import ResponseRuns
from gateway.store.responses import ResponseStore, StoredResponse
from gateway.store.settings import RedisSettings

TTL = 60_000


def _stored(response_id: str) -> StoredResponse:
    return StoredResponse({"id": response_id, "output": ["private"]}, [])


class Stop(Exception):
    pass


async def test_a_purge_erases_in_batches_resumes_and_leaves_the_ledger(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    store = Store(redis_client)
    key, _ = await store.create_key("alice", balance=1000)
    other, _ = await store.create_key("bob")
    responses = ResponseStore(redis_client)
    for n in range(7):
        await responses.save(key.id, _stored(f"resp_{n}"), TTL)
    await responses.save(other.id, _stored("resp_bob"), TTL)
    runs = ResponseRuns(redis_client, RedisSettings(url=redis_url), ResponsesSettings())
    event = [(0, "response.created", b"{}")]
    assert await runs.write(key.id, "resp_bg", "t", "begin", TTL, event, _stored("resp_bg")) == "ok"
    ledger = await store.ledger(key.id)

    def stop_after_the_first_batch(erased: int) -> None:
        raise Stop(erased)  # a crash, a lost connection

    with pytest.raises(Stop) as stopped:
        await purge_key(
            store, key.id, actor="cli:ops", batch=3, progress=stop_after_the_first_batch
        )
    assert stopped.value.args == (3,)
    assert await redis_client.zcard(schema.stored_responses(key.id)) == 5

    seen: list[int] = []
    result = await purge_key(store, key.id, actor="cli:ops", batch=3, progress=seen.append)
    assert result.responses == 5 and seen == [3, 5]  # resumed where it stopped
    purged = {"responses": 5, "a2a_tasks": 0, "a2a_contexts": 0}
    assert result.to_json() == {"id": key.id, "purged": purged, "complete": True}
    assert await redis_client.keys(f"*{key.id}*response*") == []  # streams, runs too
    assert (await purge_key(store, key.id, actor="cli:ops")).responses == 0  # idempotent

    assert await responses.load(other.id, "resp_bob") is not None  # another key's stays
    assert await store.ledger(key.id) == ledger and await store.balance(key.id) == 1000
    audit = [e for e in await store.audit_log() if e.action == "key.purge"]
    assert [e.details for e in audit] == [
        {"responses": 0, "a2a_tasks": 0, "a2a_contexts": 0},
        {"responses": 5, "a2a_tasks": 0, "a2a_contexts": 0},
    ]
    assert {e.actor for e in audit} == {"cli:ops"}
    # A background run of a purged response has lost its run token: it stops, writing nothing.
    assert await runs.write(key.id, "resp_bg", "t", "step", TTL, event) == "lost"
    assert await redis_client.keys(f"*{key.id}*response*") == []
    await runs.aclose()


async def test_an_unknown_key_is_404(redis_client: aioredis.Redis) -> None:
    with pytest.raises(NotFound):
        await purge_key(Store(redis_client), "key_nope", actor=None)


async def test_memory_is_bounded_by_the_batch_not_by_what_is_stored(
    redis_client: aioredis.Redis,
) -> None:
    """A key with many stored responses (here 50,000 listed) is erased holding one
    batch of ids at a time."""
    store = Store(redis_client)
    key, _ = await store.create_key("busy")
    index = schema.stored_responses(key.id)
    total = 50_000
    for start in range(0, total, 5000):
        await redis_client.zadd(
            index, {f"resp_{n:08d}": 10**13 for n in range(start, start + 5000)}
        )
    tracemalloc.start()
    try:
        await purge_key(store, key.id, actor=None, batch=500)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert await redis_client.exists(index) == 0
    # 50,000 ids with their four key names would take several MB; one batch, a few hundred KB.
    assert peak < 1_500_000, peak


async def test_scan_also_erases_what_was_stored_before_the_index(
    redis_client: aioredis.Redis,
) -> None:
    store = Store(redis_client)
    key, _ = await store.create_key("old")
    other, _ = await store.create_key("other")
    for n in range(5):  # as an older version stored them: no index entry
        await redis_client.set(schema.stored_response(key.id, f"resp_{n}"), "{}")
    await redis_client.xadd(schema.response_events(key.id, "resp_0"), {"t": "x", "e": "{}"})
    await redis_client.set(schema.stored_response(other.id, "resp_0"), "{}")
    await ResponseStore(redis_client).save(key.id, _stored("resp_new"), TTL)
    # A2A as the first version of the door stored it: a task, its stream, its agent's
    # list, a context; no index of either.
    await redis_client.set(schema.a2a_task(key.id, "t_old"), "{}")
    await redis_client.xadd(schema.a2a_task_events(key.id, "t_old"), {"e": "{}"})
    await redis_client.zadd(schema.a2a_tasks(key.id, "echo"), {"t_old": 1})
    await redis_client.set(schema.a2a_context(key.id, "c_old"), "[]")
    await redis_client.set(schema.a2a_context(other.id, "c_old"), "[]")

    indexed = await purge_key(store, key.id, actor="cli:ops")
    assert indexed.responses == 1
    assert len(await redis_client.keys(f"*{key.id}*response:*")) == 6  # the index alone misses them
    assert len(await redis_client.keys(f"*{key.id}*:a2a:*")) == 4
    scanned = await purge_key(store, key.id, actor="cli:ops", batch=2, scan=True)
    assert scanned.responses == 5
    assert (scanned.count(A2A_TASKS), scanned.count(A2A_CONTEXTS)) == (1, 1)
    assert await redis_client.keys(f"*{key.id}*response*") == []
    assert await redis_client.keys(f"*{key.id}*:a2a:*") == []
    assert await redis_client.exists(schema.stored_response(other.id, "resp_0"))
    assert await redis_client.exists(schema.a2a_context(other.id, "c_old"))
    assert await store.get_key(key.id)  # its record stays
    [latest, *_] = [e for e in await store.audit_log() if e.action == "key.purge"]
    assert latest.details == {
        "responses": 0,
        "a2a_tasks": 0,
        "a2a_contexts": 0,
        "scan": True,
        "unindexed": 7,
    }


async def test_another_kind_of_content_is_erased_with_the_responses(
    redis_client: aioredis.Redis,
) -> None:
    """The seam a new store of content (A2A tasks, say) uses: its own index, one kind."""
    tasks = StoredKind(
        "tasks", lambda key_id: f"gw:{{{key_id}}}:tasks", lambda k, i: (f"gw:{{{k}}}:task:{i}",)
    )
    store = Store(redis_client)
    key, _ = await store.create_key("a2a")
    await ResponseStore(redis_client).save(key.id, _stored("resp_1"), TTL)
    for n in range(3):
        await redis_client.set(f"gw:{{{key.id}}}:task:t{n}", "{}")
        await redis_client.zadd(tasks.index(key.id), {f"t{n}": 10**13})
    result = await purge_key(store, key.id, actor="cli:ops", kinds=(RESPONSES, tasks))
    assert result.to_json()["purged"] == {"responses": 1, "tasks": 3}
    assert await redis_client.keys(f"*{key.id}*task*") == []
    [audit] = [e for e in await store.audit_log() if e.action == "key.purge"]
    assert audit.details == {"responses": 1, "tasks": 3}


async def test_a2a_tasks_with_their_streams_and_contexts_are_erased_too(
    redis_client: aioredis.Redis,
) -> None:
    store = Store(redis_client)
    key, _ = await store.create_key("agent", balance=10)
    other, _ = await store.create_key("other")
    tasks = TaskStore(redis_client)
    for n, agent in enumerate(("echo", "echo", "slow")):
        stored = StoredTask(agent, {"id": f"t{n}", "history": ["private"]})
        await tasks.save(key.id, stored, [{"text": "private"}], retention_ms=TTL, running=True)
        await tasks.save_context(key.id, f"c{n}", [{"content": "private"}], retention_ms=TTL)
    await tasks.request_cancel(key.id, "t0")
    await tasks.save(other.id, StoredTask("echo", {"id": "t0"}), retention_ms=TTL)
    await tasks.save_context(other.id, "c0", [], retention_ms=TTL)
    await ResponseStore(redis_client).save(key.id, _stored("resp_1"), TTL)
    ledger = await store.ledger(key.id)

    def stop_after_the_first_batch(erased: int) -> None:
        if erased > 1:  # past the response, one batch of tasks
            raise Stop(erased)

    with pytest.raises(Stop):
        await purge_key(store, key.id, actor=None, batch=2, progress=stop_after_the_first_batch)
    result = await purge_key(store, key.id, actor="cli:ops", batch=2)
    assert (result.responses, result.count(A2A_TASKS), result.count(A2A_CONTEXTS)) == (0, 1, 3)
    # Nothing of the key's tasks is left: values, streams, leases, flags, lists, indexes.
    assert await redis_client.keys(f"*{key.id}*:a2a:*") == []
    assert await redis_client.keys(f"*{key.id}*response*") == []
    again = await purge_key(store, key.id, actor="cli:ops")
    assert again.to_json()["purged"] == {"responses": 0, "a2a_tasks": 0, "a2a_contexts": 0}
    assert await tasks.load(other.id, "t0") is not None
    assert await tasks.load_context(other.id, "c0") == []
    assert await tasks.listed(other.id, "echo") != []
    assert await store.ledger(key.id) == ledger and await store.balance(key.id) == 10
    audit = [e for e in await store.audit_log() if e.action == "key.purge"]
    assert audit[1].details == {"responses": 0, "a2a_tasks": 1, "a2a_contexts": 3}
