"""What the gateway keeps of A2A conversations, through the official ``a2a-sdk`` client
and real Redis: tasks, their streams and contexts sealed at rest (and plain ones of
before still read), a route's retention, ``store: never`` served live with nothing
kept, and a key's tasks and contexts erased by a purge."""

from __future__ import annotations

import base64
import os
from typing import Any

import aiohttp
import pytest
from a2a.types import a2a_pb2 as a2a
from a2a.utils.errors import TaskNotFoundError
from redis import asyncio as aioredis

from gateway.store import erasure
from tests.conftest import RunningGateway, StartGateway, make_config
from tests.integration.a2a_support import MakeA2A, collect, message, streamed_text, text_of
from tests.integration.support import settled, usage_entries

SECRET_TEXT = "quarterly salary review of Alice Martin"
OLD_TEXT = "written before encryption was on"
CONFIG = """
backends:
  echo: {type: echo}
  slow: {type: echo, chunk_delay: 0.05}
routes:
  echo:
    backend: echo
    pricing: {input: 1, output: 2}
  slow:
    backend: slow
    pricing: {input: 1, output: 2}
  private:
    backend: echo
    pricing: {input: 1, output: 2}
    store: never
  hush:
    backend: slow
    pricing: {input: 1, output: 2}
    store: never
  brief:
    backend: echo
    retention_seconds: 120
"""
KEY = base64.b64encode(os.urandom(32)).decode()
LONG = " ".join(f"w{i}" for i in range(40))  # 40 chunks, 50 ms apart on the slow route


async def _values(redis: aioredis.Redis, name: str) -> list[str]:
    """What Redis holds under ``name``, whatever its type: its content values."""
    kind = await redis.type(name)
    if kind == "string":
        return [await redis.get(name)]
    if kind == "stream":
        return [v for _, fields in await redis.xrange(name) for v in fields.values()]
    if kind == "zset":
        return list(await redis.zrange(name, 0, -1))
    if kind == "set":
        return list(await redis.smembers(name))
    if kind == "hash":
        return [f"{k}={v}" for k, v in (await redis.hgetall(name)).items()]
    return [repr(await redis.lrange(name, 0, -1))]


async def _rpc(
    http: aiohttp.ClientSession, gw: RunningGateway, key: str, agent: str, method: str, params: Any
) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    headers = {"Authorization": f"Bearer {key}"}
    async with http.post(f"{gw.url}/a2a/{agent}", json=body, headers=headers) as r:
        assert r.status == 200
        reply: dict[str, Any] = await r.json()
        return reply


async def test_tasks_streams_and_contexts_are_sealed_and_plain_ones_of_before_still_read(
    start_gateway: StartGateway,
    a2a_client: MakeA2A,
    redis_client: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GW_TEST_KEY", KEY)
    plain = await start_gateway(CONFIG)
    secret = await plain.new_key()
    [old] = await collect(
        (await a2a_client(plain, secret, streaming=False)).send_message(message(OLD_TEXT))
    )
    old_task = old.task

    gw = await start_gateway("responses: {encryption: {key_env: GW_TEST_KEY}}\n" + CONFIG)
    client = await a2a_client(gw, secret)
    assert text_of(await client.get_task(a2a.GetTaskRequest(id=old_task.id))) == OLD_TEXT
    # The old plain context continues, and the new turns are sealed.
    events = await collect(client.send_message(message(SECRET_TEXT, old_task.context_id)))
    assert events[-1].status_update.status.state == a2a.TASK_STATE_COMPLETED
    task_id = events[0].task.id
    assert text_of(await client.get_task(a2a.GetTaskRequest(id=task_id))) == SECRET_TEXT
    blocking = await a2a_client(gw, secret, streaming=False)
    [again] = await collect(blocking.send_message(message("and again", old_task.context_id)))
    assert [m.role for m in again.task.history] == [a2a.ROLE_USER, a2a.ROLE_AGENT]
    # A stream dropped and resubscribed: every sealed event opens, in order.
    slow = await a2a_client(gw, secret, "slow")
    long = " ".join([SECRET_TEXT] * 5)
    stream = slow.send_message(message(long))
    first = [await anext(stream), await anext(stream), await anext(stream)]
    await stream.aclose()
    resumed = await collect(slow.subscribe(a2a.SubscribeToTaskRequest(id=first[0].task.id)))
    assert streamed_text(resumed) == long
    listed = await client.list_tasks(a2a.ListTasksRequest(include_artifacts=True))
    assert {text_of(t) for t in listed.tasks} == {OLD_TEXT, SECRET_TEXT, "and again"}
    await gw.gateway.tasks.drain()

    names = [n for n in await redis_client.keys("*") if not n.startswith("gw:audit")]
    sealed = 0
    for name in names:
        values = await _values(redis_client, name)
        assert not any("Alice" in v for v in values), name  # nowhere, in any value
        content = ":a2a:task:" in name or ":a2a:context:" in name
        if content and old_task.id not in name and await redis_client.type(name) != "none":
            for value in values if not name.endswith(":run") else ():
                assert value.startswith("gwe1:"), (name, value)
                sealed += 1
    assert sealed >= 20  # tasks, contexts and every stream response


async def test_a_routes_retention_applies_to_its_tasks_and_contexts(
    start_gateway: StartGateway, a2a_client: MakeA2A, redis_client: aioredis.Redis
) -> None:
    gw = await start_gateway(CONFIG)
    key = await gw.new_key()
    brief = await collect((await a2a_client(gw, key, "brief")).send_message(message("hello")))
    kept = await collect((await a2a_client(gw, key, "echo")).send_message(message("hello")))
    await gw.gateway.tasks.drain()
    for events, low, high in ((brief, 100, 120), (kept, 86400, 31 * 86400)):
        task = events[0].task
        names = [n for n in await redis_client.keys("gw:*:a2a:*") if task.id in n]
        names += [n for n in await redis_client.keys("gw:*:a2a:context:*") if task.context_id in n]
        assert len(names) == 3  # the task, its stream, its context
        for name in names:
            assert low < await redis_client.ttl(name) <= high, name


async def test_store_never_serves_live_keeps_nothing_and_says_why(
    start_gateway: StartGateway,
    a2a_client: MakeA2A,
    redis_client: aioredis.Redis,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(CONFIG)
    key = await gw.new_key()
    key_id = (await gw.key_of(key)).id
    client = await a2a_client(gw, key, "private")
    events = await collect(client.send_message(message(SECRET_TEXT)))
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[:2] == ["task", "status_update"] and "artifact_update" in kinds
    assert streamed_text(events) == SECRET_TEXT
    final = events[-1].status_update
    assert final.status.state == a2a.TASK_STATE_COMPLETED and final.metadata["cost"]["credits"] > 0
    blocking = await a2a_client(gw, key, "private", streaming=False)
    [done] = await collect(blocking.send_message(message("and now")))
    assert done.task.status.state == a2a.TASK_STATE_COMPLETED and text_of(done.task) == "and now"
    # A client that leaves a live stream stops its call, billed for what it produced.
    hush = await a2a_client(gw, key, "hush")
    stream = hush.send_message(message(" ".join(f"w{i}" for i in range(60))))
    [await anext(stream) for _ in range(3)]
    await stream.aclose()
    await settled(gw, key_id)
    entries = await usage_entries(gw, key_id, count=3)
    assert {e.agent for e in entries} == {"private", "hush"}
    assert gw.gateway.active_calls == 0
    await gw.gateway.tasks.drain()
    assert await redis_client.keys("*:a2a:*") == []  # nothing kept, not even while it ran

    for task_id in (events[0].task.id, done.task.id):
        with pytest.raises(TaskNotFoundError) as absent:
            await blocking.get_task(a2a.GetTaskRequest(id=task_id))
        assert "storage is off for agent 'private'" in str(absent.value)
        with pytest.raises(TaskNotFoundError):
            await blocking.cancel_task(a2a.CancelTaskRequest(id=task_id))
        with pytest.raises(TaskNotFoundError):
            await collect(client.subscribe(a2a.SubscribeToTaskRequest(id=task_id)))
    assert list((await blocking.list_tasks(a2a.ListTasksRequest())).tasks) == []

    send = {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "x"}]}
    refused = [
        ({"message": send, "configuration": {"returnImmediately": True}}, "returnImmediately"),
        ({"message": {**send, "contextId": events[0].task.context_id}}, "contextId"),
        ({"message": {**send, "taskId": done.task.id}}, "taskId"),
    ]
    for params, field in refused:
        for method in ("SendMessage", "SendStreamingMessage"):
            reply = await _rpc(http, gw, key, "private", method, params)
            error = reply["error"]
            assert error["code"] == -32602, (method, field)
            assert error["message"].startswith("Storage is off for agent 'private'")
            assert (
                f"'{'configuration' if field == 'returnImmediately' else 'message'}.{field}'"
                in (error["message"])
            )
            assert error["data"][0]["reason"] == "STORAGE_DISABLED"
    assert len(await usage_entries(gw, key_id, count=3)) == 3  # a refusal makes no call


async def test_a_task_stored_before_storage_was_turned_off_is_not_read_back(
    start_gateway: StartGateway, a2a_client: MakeA2A
) -> None:
    gw = await start_gateway(CONFIG)
    key = await gw.new_key()
    client = await a2a_client(gw, key, "echo", streaming=False)
    [event] = await collect(client.send_message(message("before the change")))
    gw.gateway.reload(
        make_config(
            CONFIG.replace(
                "    pricing: {input: 1, output: 2}\n  slow",
                ("    pricing: {input: 1, output: 2}\n    store: never\n  slow"),
            )
        )
    )
    assert not gw.gateway.storage("echo").allowed
    with pytest.raises(TaskNotFoundError) as absent:
        await client.get_task(a2a.GetTaskRequest(id=event.task.id))
    assert "storage is off" in str(absent.value)
    assert list((await client.list_tasks(a2a.ListTasksRequest())).tasks) == []


async def test_a_purge_erases_a_keys_tasks_and_contexts_and_leaves_the_ledger(
    start_gateway: StartGateway, a2a_client: MakeA2A, redis_client: aioredis.Redis
) -> None:
    gw = await start_gateway(CONFIG)
    key = await gw.new_key()
    other = await gw.new_key()
    key_id = (await gw.key_of(key)).id
    client = await a2a_client(gw, key)
    first = await collect(client.send_message(message("my name is Ada")))
    context_id = first[0].task.context_id
    await collect(client.send_message(message("what is my name?", context_id)))
    await collect((await a2a_client(gw, key, "slow")).send_message(message("elsewhere")))
    kept = await collect((await a2a_client(gw, other)).send_message(message("not mine")))
    await settled(gw, key_id)
    await gw.gateway.tasks.drain()
    # A task still running when it is erased stops, and writes nothing back.
    running = (await a2a_client(gw, key, "slow")).send_message(message(LONG))
    [await anext(running) for _ in range(3)]
    await running.aclose()

    result = await erasure.purge_key(gw.store, key_id, actor="cli:ops", batch=2)
    purged = result.to_json()["purged"]
    assert purged == {"responses": 0, "a2a_tasks": 4, "a2a_contexts": 2}
    await gw.gateway.tasks.drain()  # the run, stopped at its next write
    assert gw.gateway.active_calls == 0
    await settled(gw, key_id)
    assert await redis_client.keys(f"*{key_id}*:a2a:*") == []
    ledger = await gw.store.ledger(key_id)
    assert len([e for e in ledger if e.kind == "usage"]) == 4  # the stopped run is billed
    with pytest.raises(TaskNotFoundError):
        await client.get_task(a2a.GetTaskRequest(id=first[0].task.id))
    assert list((await client.list_tasks(a2a.ListTasksRequest())).tasks) == []
    again = await erasure.purge_key(gw.store, key_id, actor="cli:ops")
    assert again.to_json()["purged"] == {"responses": 0, "a2a_tasks": 0, "a2a_contexts": 0}
    theirs = await a2a_client(gw, other)
    assert (await theirs.get_task(a2a.GetTaskRequest(id=kept[0].task.id))).id == kept[0].task.id
    audit = [e for e in await gw.store.audit_log() if e.action == "key.purge"]
    assert audit[-1].details == {"responses": 0, "a2a_tasks": 4, "a2a_contexts": 2}
    assert await gw.store.ledger(key_id) == ledger  # the purges left it
