"""The gateway on a Redis Cluster: every multi-key script's keys share one hash tag.

Keys of different accounts land on different nodes; admission, settlement,
limits and the ledger work as on one server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import openai
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import a2a_pb2 as a2a
from a2a.utils.errors import TaskNotFoundError
from aiohttp import web
from redis.asyncio.cluster import RedisCluster

from gateway.server.app import create_app
from gateway.server.keys import GATEWAY
from gateway.store import aggregates, catalogue, erasure
from gateway.store.records import KeyLimits
from tests.conftest import ECHO_CONFIG, free_port, make_config
from tests.integration.a2a_support import collect, message, streamed_text


@pytest.fixture
async def cluster_gateway(redis_cluster_url: str) -> AsyncIterator[tuple[str, web.Application]]:
    flush = RedisCluster.from_url(redis_cluster_url)
    await flush.flushall()
    await flush.aclose()
    config = make_config(ECHO_CONFIG + "    limits: {max_concurrent: 50}\n", redis_cluster_url)
    config = replace(config, redis=replace(config.redis, cluster=True))
    app = create_app(config)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", app
    await runner.cleanup()


async def test_metering_and_limits_on_a_cluster(
    cluster_gateway: tuple[str, web.Application],
) -> None:
    url, app = cluster_gateway
    store = app[GATEWAY].store
    keys = [await store.create_key(f"k{i}", balance=100_000) for i in range(4)]
    limited, secret = await store.create_key("limited", balance=100_000, limits=KeyLimits(rpm=3))

    async def ask(secret: str, stream: bool) -> None:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0) as c:
            messages = [{"role": "user", "content": "hello cluster"}]
            if stream:
                async for _ in await c.chat.completions.create(
                    model="slow",
                    messages=messages,
                    stream=True,  # type: ignore[arg-type]
                ):
                    pass
            else:
                await c.chat.completions.create(model="echo", messages=messages)  # type: ignore[arg-type]

    await asyncio.gather(*(ask(s, i % 2 == 0) for i, (_, s) in enumerate(keys * 3)))
    for key, _ in keys:
        for _ in range(100):
            if await store.held(key.id) == 0:
                break
            await asyncio.sleep(0.02)
        ledger = await store.ledger(key.id)
        assert len([e for e in ledger if e.kind == "usage"]) == 3
        assert sum(e.amount for e in ledger) == await store.balance(key.id) < 100_000

    results = await asyncio.gather(*(ask(secret, False) for _ in range(5)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(refused) == 2 and results.count(None) == 3
    assert limited.limits.rpm == 3

    # The aggregates and the key catalogue read on a cluster too (one slot per script).
    for key, _ in keys:
        ledger = await store.ledger(key.id)
        spent = -sum(e.amount for e in ledger if e.kind == "usage")
        mine = await aggregates.read(store.redis, key.id, "day", 2)
        assert mine.total.credits == spent and mine.total.requests == 3
    await app[GATEWAY].holds.totals.flush()
    overall = await aggregates.read(store.redis, None, "day", 30)
    assert overall.total.requests >= 12 and len(overall.top_keys) >= 4
    found = await catalogue.page(store.redis, query="k", sort="name")
    assert [r.key.name for r in found.rows][:4] == ["k0", "k1", "k2", "k3"]
    near = await catalogue.near_limits(store.redis)  # its minute may have turned: at most it
    assert {n.key_id for n in near} <= {limited.id}


async def test_stored_responses_background_runs_and_purge_on_a_cluster(
    cluster_gateway: tuple[str, web.Application],
) -> None:
    """The save and write scripts touch a response, its stream and the key's index, and
    a purge deletes them in multi-key DELs: all under one hash tag, on any node."""
    url, app = cluster_gateway
    store = app[GATEWAY].store
    keys = [await store.create_key(f"r{i}", balance=100_000) for i in range(3)]
    for key, secret in keys:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0) as c:
            first = await c.responses.create(model="echo", input="hello cluster")
            second = await c.responses.create(
                model="echo", input="again", previous_response_id=first.id
            )
            stream = await c.responses.create(
                model="echo", input="in the background", background=True, stream=True
            )
            assert [e.type async for e in stream][-1] == "response.completed"
            assert (await c.responses.retrieve(second.id)).status == "completed"
        await app[GATEWAY].tasks.drain()
        result = await erasure.purge_key(store, key.id, actor=None)
        assert result.responses == 3
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0) as c:
            with pytest.raises(openai.NotFoundError):
                await c.responses.retrieve(first.id)


async def test_a2a_tasks_contexts_and_their_purge_on_a_cluster(
    cluster_gateway: tuple[str, web.Application],
) -> None:
    """A task's script touches the task, its stream, its lease, its agent's list and the
    key's indexes; a context is saved with its index; a purge deletes them all: one
    hash tag each, on any node."""
    url, app = cluster_gateway
    store = app[GATEWAY].store
    keys = [await store.create_key(f"a{i}", balance=100_000) for i in range(3)]
    for key, secret in keys:
        headers = {"Authorization": f"Bearer {secret}"}
        async with httpx.AsyncClient(headers=headers, timeout=10) as http:
            card = await A2ACardResolver(http, f"{url}/a2a/slow").get_agent_card()
            client = ClientFactory(ClientConfig(httpx_client=http)).create(card)
            first = await collect(client.send_message(message("hello cluster")))
            assert streamed_text(first) == "hello cluster"
            context_id = first[0].task.context_id
            stream = client.send_message(message("one two three four five", context_id))
            dropped = [await anext(stream), await anext(stream)]
            await stream.aclose()
            resumed = await collect(
                client.subscribe(a2a.SubscribeToTaskRequest(id=dropped[0].task.id))
            )
            assert streamed_text(resumed) == "one two three four five"
            await app[GATEWAY].tasks.drain()
            result = await erasure.purge_key(store, key.id, actor=None)
            assert result.to_json()["purged"] == {
                "responses": 0,
                "a2a_tasks": 2,
                "a2a_contexts": 1,
            }
            with pytest.raises(TaskNotFoundError):
                await client.get_task(a2a.GetTaskRequest(id=first[0].task.id))
