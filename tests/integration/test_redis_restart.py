"""Redis restarted while the gateway is idle: the first request afterwards succeeds, and is
metered exactly once. Each test runs its own redis-server, never the session's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis import asyncio as aioredis

from gateway import apikeys
from gateway.store import Store
from gateway.store.settings import RedisSettings
from gateway.store.store import connect
from tests.integration.processes import StartProcess
from tests.integration.redis_server import RedisServer
from tests.integration.support import eventually

CONFIG = """
redis: {socket_timeout: 0.5, connect_timeout: 0.5, admission: fail_closed}
auth: {cache_ttl: 0.2, stale_for: 30}
backends:
  echo: {type: echo}
routes:
  echo:
    backend: echo
    pricing: {input: 1, output: 2}
    max_output_tokens: 20
"""


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    yield server
    server.kill()


@asynccontextmanager
async def admin(server: RedisServer) -> AsyncIterator[Store]:
    """A store of the test's own, on fresh connections."""
    store = Store(aioredis.Redis.from_url(server.url, decode_responses=True))
    try:
        yield store
    finally:
        await store.aclose()


async def restart(server: RedisServer) -> None:
    """Stop Redis (its clients' connections close) and start it again on the same port."""
    await asyncio.to_thread(server.stop)
    await asyncio.to_thread(server.start)
    await asyncio.sleep(0.2)  # the gateway is idle: every close has long reached it


async def test_the_first_request_after_a_restart_while_idle_succeeds(
    gateway_processes: StartProcess, redis_server: RedisServer
) -> None:
    initial = 1_000_000
    async with admin(redis_server) as store:
        key, secret = await store.create_key("idle", balance=initial)
    gateway = await gateway_processes(CONFIG, redis=redis_server.url)
    body = {"model": "echo", "messages": [{"role": "user", "content": "one two three"}]}
    headers = {"Authorization": f"Bearer {secret}"}
    statuses: list[tuple[int, str]] = []
    async with aiohttp.ClientSession() as http:
        for _ in range(3):  # each request runs on connections made before the restart
            async with http.post(
                f"{gateway.url}/v1/chat/completions", json=body, headers=headers
            ) as r:
                statuses.append((r.status, (await r.text())[:300]))
            await restart(redis_server)
        for _ in range(2):  # a key this process has never seen: auth asks Redis
            async with admin(redis_server) as store:
                _, fresh = await store.create_key("new", balance=initial)
            async with http.post(
                f"{gateway.url}/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {fresh}"},
            ) as r:
                statuses.append((r.status, (await r.text())[:300]))
            await restart(redis_server)
    assert [s for s, _ in statuses] == [200] * 5, statuses

    async with admin(redis_server) as store:

        async def settled() -> bool:
            usage = [e for e in await store.ledger(key.id) if e.kind == "usage"]
            return len(usage) >= 3 and await store.held(key.id) == 0

        await eventually(settled, within=10, interval=0.1)
        await asyncio.sleep(0.5)  # a late duplicate would show now
        ledger = await store.ledger(key.id)
        usage = [e for e in ledger if e.kind == "usage"]
        assert len(usage) == 3 and len({e.request_id for e in usage}) == 3
        assert sum(e.amount for e in ledger) == await store.balance(key.id)
        assert await store.balance(key.id) == initial + sum(e.amount for e in usage)


@pytest.mark.parametrize("health_check_due", [False, True])
async def test_the_store_pool_makes_connections_afresh_after_a_restart(
    redis_server: RedisServer, health_check_due: bool
) -> None:
    """Commands outside the pipeliner (auth lookups, admin) take pooled connections:
    ones Redis closed while they lay idle are replaced before a command is written,
    whether or not a health check PING is due on them."""
    settings = RedisSettings(url=redis_server.url, socket_timeout=0.5, connect_timeout=0.5)
    store = Store(connect(settings))
    try:
        key, secret = await store.create_key("pooled", balance=10)
        await asyncio.gather(*(store.balance(key.id) for _ in range(8)))  # several idle now
        await restart(redis_server)
        pool: Any = store.redis.connection_pool
        if health_check_due:
            for connection in pool._available_connections:
                connection.next_health_check = 0
        found = await store.find_key(apikeys.digest(secret))
        assert found is not None and found.id == key.id
        assert await store.credit(key.id, 5) == 15
        assert sum(e.amount for e in await store.ledger(key.id)) == 15
    finally:
        await store.aclose()
