"""Metering across real gateway processes sharing one Redis: no overspending, no lost or
doubled charge when a process dies, rate limits that hold across processes."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from redis import asyncio as aioredis

from gateway.store import Store
from gateway.store.records import KeyLimits
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
"""

TEXT = "one two three four five six seven eight nine ten"


async def stream(
    http: aiohttp.ClientSession, gateway: GatewayProcess, secret: str, *, read: int | None = None
) -> int:
    """Stream one request; read everything (or ``read`` frames, then vanish). The status."""
    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": TEXT}]}
    headers = {"Authorization": f"Bearer {secret}"}
    async with http.post(f"{gateway.url}/v1/chat/completions", json=body, headers=headers) as r:
        if r.status != 200:
            await r.read()
            return r.status
        frames = 0
        async for line in r.content:
            frames += line.startswith(b"data: ")
            if read is not None and frames >= read:
                break
        return r.status


async def ledger_matches_balance(store: Store, key_id: str, initial: int) -> None:
    ledger = await store.ledger(key_id)
    assert sum(e.amount for e in ledger) == await store.balance(key_id)
    assert sum(e.amount for e in ledger if e.kind == "usage") == (
        await store.balance(key_id) - initial
    )
    request_ids = [e.request_id for e in ledger if e.kind == "usage"]
    assert len(request_ids) == len(set(request_ids))  # each request charged once


async def test_concurrent_streams_over_two_processes_never_overspend(
    gateway_processes: StartProcess, redis_client: aioredis.Redis
) -> None:
    config = CONFIG.format(delay=0.01, lease=30)
    a, b = await gateway_processes(config), await gateway_processes(config)
    store = Store(redis_client)
    initial = 2_000  # each request may cost up to about 80 credits: some fit, not all
    key, secret = await store.create_key("shared", balance=initial)
    lowest = initial
    done = False

    async def watch() -> None:
        nonlocal lowest
        while not done:
            lowest = min(lowest, await store.balance(key.id))
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        statuses = await asyncio.gather(*(stream(http, (a, b)[i % 2], secret) for i in range(200)))
    await eventually(lambda: _nothing_held(store, key.id), within=10)
    done = True
    await watcher

    assert set(statuses) <= {200, 402}
    assert statuses.count(402) > 0 and statuses.count(200) > 0
    assert lowest >= 0 and await store.balance(key.id) >= 0
    await ledger_matches_balance(store, key.id, initial)
    assert len([e for e in await store.ledger(key.id) if e.kind == "usage"]) == statuses.count(200)


async def test_a_killed_process_loses_no_charge_and_doubles_none(
    gateway_processes: StartProcess, redis_client: aioredis.Redis
) -> None:
    config = CONFIG.format(delay=0.3, lease=1.5)
    doomed, survivor = await gateway_processes(config), await gateway_processes(config)
    store = Store(redis_client)
    key, secret = await store.create_key("victim", balance=1_000_000)
    async with aiohttp.ClientSession() as http:
        streams = [asyncio.create_task(stream(http, doomed, secret)) for _ in range(20)]
        await eventually(lambda: _held_count(redis_client, key.id, 20), within=5)
        await asyncio.sleep(1.0)  # some output streamed, and a renewal recorded it
        doomed.kill()
        await asyncio.gather(*streams, return_exceptions=True)
    killed_at = time.monotonic()
    assert await store.held(key.id) > 0  # nobody settled them

    await eventually(lambda: _nothing_held(store, key.id), within=10)
    assert time.monotonic() - killed_at >= 0.5  # settled after the lease, not before
    usage = [e for e in await store.ledger(key.id) if e.kind == "usage"]
    assert len(usage) == 20 and all(e.reaped and e.usage and e.usage.estimated for e in usage)
    assert all(e.usage is not None and e.usage.output_tokens > 0 for e in usage)  # progress kept
    await asyncio.sleep(1.5)  # more reaper passes on the survivor change nothing
    await ledger_matches_balance(store, key.id, 1_000_000)
    assert len([e for e in await store.ledger(key.id) if e.kind == "usage"]) == 20
    assert survivor.proc.poll() is None


async def test_rate_limit_holds_across_processes(
    gateway_processes: StartProcess, redis_client: aioredis.Redis
) -> None:
    config = CONFIG.format(delay=0, lease=30)
    a, b = await gateway_processes(config), await gateway_processes(config)
    store = Store(redis_client)
    _, secret = await store.create_key("limited", balance=1_000_000, limits=KeyLimits(rpm=10))
    if time.time() % 60 > 50:  # keep the burst inside one window
        await asyncio.sleep(61 - time.time() % 60)
    async with aiohttp.ClientSession() as http:
        statuses = await asyncio.gather(*(stream(http, (a, b)[i % 2], secret) for i in range(30)))
        body = {"model": "slow", "messages": [{"role": "user", "content": "x"}]}
        headers = {"Authorization": f"Bearer {secret}"}
        async with http.post(f"{b.url}/v1/chat/completions", json=body, headers=headers) as r:
            assert r.status == 429
            assert 1 <= int(r.headers["Retry-After"]) <= 60
            assert r.headers["x-ratelimit-limit-requests"] == "10"
            assert r.headers["x-ratelimit-remaining-requests"] == "0"
            assert (await r.json())["error"]["type"] == "rate_limit_error"
    assert statuses.count(200) == 10 and statuses.count(429) == 20


async def _nothing_held(store: Store, key_id: str) -> bool:
    return await store.held(key_id) == 0 and not await store.redis.hlen(f"gw:{{{key_id}}}:holds")  # type: ignore[misc]


async def _held_count(redis: aioredis.Redis, key_id: str, count: int) -> bool:
    return int(await redis.hlen(f"gw:{{{key_id}}}:holds")) >= count  # type: ignore[misc]
