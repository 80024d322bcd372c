"""Redis stopped (or frozen) for five seconds under load, then back: no settlement lost or
doubled, known keys kept working, admission refused with a 503 that says why, and no
gateway process ever hung. Each test runs its own redis-server, never the session's."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from redis import asyncio as aioredis

from gateway.store import Store
from tests.integration.processes import GatewayProcess, StartProcess
from tests.integration.redis_server import RedisServer
from tests.integration.support import eventually

CONFIG = """
redis: {{socket_timeout: 0.5, connect_timeout: 0.5, admission: {admission}}}
auth: {{cache_ttl: 0.5, stale_for: 30}}
metering: {{lease_seconds: 3}}
backends:
  slow: {{type: echo, chunk_delay: 0.03}}
routes:
  slow:
    backend: slow
    pricing: {{input: 1, output: 2}}
    max_output_tokens: 20
"""

TEXT = "one two three four five six seven eight nine ten eleven twelve"
OUTAGE = 5.0
ANSWER_WITHIN = 3.0  # any refusal comes this fast; a stream runs about 0.5 s


@dataclass
class Outcome:
    gateway: str
    request_id: str
    key: str
    stream: bool
    status: int
    complete: bool
    started: float
    elapsed: float
    body: str


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    yield server
    server.kill()


async def call(
    http: aiohttp.ClientSession, gateway: GatewayProcess, name: str, secret: str, stream: bool
) -> Outcome:
    request_id = f"req_{uuid.uuid4().hex[:16]}"
    body = {"model": "slow", "stream": stream, "messages": [{"role": "user", "content": TEXT}]}
    headers = {"Authorization": f"Bearer {secret}", "X-Request-Id": request_id}
    started = time.monotonic()
    status, complete, text = 0, False, ""
    try:
        async with http.post(
            f"{gateway.url}/v1/chat/completions", json=body, headers=headers
        ) as response:
            status = response.status
            raw = await response.read()
            text = raw.decode()
            if status == 200:
                complete = b"data: [DONE]" in raw if stream else b'"finish_reason"' in raw
    except (aiohttp.ClientError, TimeoutError) as exc:
        text = repr(exc)
    return Outcome(
        gateway.url, request_id, name, stream, status, complete, started,
        time.monotonic() - started, text,
    )  # fmt: skip


async def scenario(gateway_processes: StartProcess, server: RedisServer, *, freeze: bool) -> None:
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    store = Store(client)
    initial = 10_000_000
    keys = {name: await store.create_key(name, balance=initial) for name in ("alpha", "beta")}
    closed = await gateway_processes(CONFIG.format(admission="fail_closed"), redis=server.url)
    opened = await gateway_processes(CONFIG.format(admission="fail_open"), redis=server.url)
    gateways = (closed, opened)
    outcomes: list[Outcome] = []
    health: list[tuple[str, int, float]] = []
    running = True
    timeout = aiohttp.ClientTimeout(total=15)

    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def load(worker: int) -> None:
            i = 0
            while running:
                gateway = gateways[worker % 2]
                name = ("alpha", "beta")[(worker // 2) % 2]
                outcomes.append(await call(http, gateway, name, keys[name][1], i % 2 == 0))
                i += 1

        async def probe_health() -> None:
            while running:
                for gateway in gateways:
                    started = time.monotonic()
                    try:
                        async with http.get(f"{gateway.url}/healthz") as r:
                            status = r.status
                    except aiohttp.ClientError:
                        status = 0
                    health.append((gateway.url, status, time.monotonic() - started))
                await asyncio.sleep(0.1)

        workers = [asyncio.create_task(load(w)) for w in range(12)]
        prober = asyncio.create_task(probe_health())
        await asyncio.sleep(2.0)  # both processes have every key in their caches now

        down_at = time.monotonic()
        if freeze:
            server.freeze()  # connections hang: only the timeouts save a request
        else:
            await asyncio.to_thread(server.stop)  # connections are refused
        await asyncio.sleep(1.0)
        # During the outage: a known key still authenticates on the fail-closed process...
        async with http.get(
            f"{closed.url}/v1/models", headers={"Authorization": f"Bearer {keys['alpha'][1]}"}
        ) as r:
            assert r.status == 200, await r.text()
        # ...an unknown key does not, and says why.
        started = time.monotonic()
        async with http.get(
            f"{closed.url}/v1/models", headers={"Authorization": "Bearer sk-gw-never-seen"}
        ) as r:
            assert r.status == 503
            error = (await r.json())["error"]
            assert error["code"] == "store_unavailable" and "Redis" in error["message"]
        assert time.monotonic() - started < ANSWER_WITHIN
        await asyncio.sleep(OUTAGE - 1.0 - (time.monotonic() - down_at - 1.0))
        if freeze:
            server.thaw()
        else:
            await asyncio.to_thread(server.start)  # same port, same data
        up_at = time.monotonic()
        await asyncio.sleep(3.0)
        running = False
        await asyncio.gather(*workers, prober)

    # Nothing hung: every request was answered or refused quickly, /healthz throughout.
    assert outcomes and all(o.status in (200, 503) for o in outcomes), {
        (o.status, o.body[:200]) for o in outcomes if o.status not in (200, 503)
    }
    slow = [o for o in outcomes if o.elapsed > ANSWER_WITHIN]
    assert not slow, [(o.status, o.elapsed) for o in slow]
    assert all(status == 200 and took < 1.0 for _, status, took in health), max(
        h[2] for h in health
    )
    assert len(health) > 2 * (OUTAGE + 4) * 5  # probed about every 0.1 s per process

    # Admission may wait for a connection, a connect and a read (0.5 s each) before it
    # gives up: a request that started closer than that to the restart may be admitted.
    during = [o for o in outcomes if down_at + 0.5 < o.started < up_at - 1.6]
    assert during
    # fail_closed: admission refused while Redis was away, with a 503 that says why.
    refused = [o for o in during if o.gateway == closed.url]
    assert refused and all(o.status == 503 for o in refused), [
        (o.status, o.started - down_at, o.elapsed, o.body[:100]) for o in refused if o.status != 503
    ]
    assert all("fail_closed" in o.body or "store" in o.body for o in refused)
    # fail_open: the known keys kept working (admitted without a reservation).
    served = [o for o in during if o.gateway == opened.url]
    assert served and all(o.status == 200 and o.complete for o in served)
    # Redis is back: requests succeed on both processes again.
    after = [o for o in outcomes if o.started > up_at + 1.5]
    assert after and all(o.status == 200 for o in after), [
        (o.gateway, o.started - up_at, o.body[:300]) for o in after if o.status != 200
    ]

    # Every completed request settled exactly once; nothing else charged; nothing held.
    await client.aclose()  # its connections died with the server: start afresh
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    store = Store(client)

    async def settled() -> bool:
        for name, (key, _) in keys.items():
            if await store.held(key.id):
                return False
            if await client.hlen(f"gw:{{{key.id}}}:holds"):  # type: ignore[misc]
                return False
            usage = [e for e in await store.ledger(key.id) if e.kind == "usage"]
            if len(usage) < len([o for o in outcomes if o.key == name and o.status == 200]):
                return False
        return True

    await eventually(settled, within=20, interval=0.2)
    await asyncio.sleep(1.0)  # a late duplicate would show now
    for name, (key, _) in keys.items():
        mine = [o for o in outcomes if o.key == name]
        completed = {o.request_id for o in mine if o.status == 200}
        assert all(o.complete for o in mine if o.status == 200)
        usage = [e for e in await store.ledger(key.id) if e.kind == "usage"]
        ids = [e.request_id for e in usage]
        assert len(ids) == len(set(ids)), "a request was charged twice"
        assert set(ids) == completed, "a settlement was lost, or a refused request charged"
        assert all(e.amount < 0 for e in usage)
        balance = await store.balance(key.id)
        assert sum(e.amount for e in usage) == balance - initial
        assert sum(e.amount for e in await store.ledger(key.id)) == balance
        assert await store.held(key.id) == 0
    for gateway in gateways:
        assert gateway.proc.poll() is None
    await client.aclose()


async def test_redis_stopped_for_five_seconds_under_load(
    gateway_processes: StartProcess, redis_server: RedisServer
) -> None:
    await scenario(gateway_processes, redis_server, freeze=False)


async def test_redis_frozen_for_five_seconds_under_load(
    gateway_processes: StartProcess, redis_server: RedisServer
) -> None:
    """SIGSTOP: connections neither answer nor fail; every call must time out on its own."""
    await scenario(gateway_processes, redis_server, freeze=True)
