"""Shared fixtures: a real Redis, a gateway on loopback, and small factories.

Integration tests need a real ``redis-server``: ``make test`` starts one and
sets ``GATEWAY_TEST_REDIS_URL``; run directly, pytest starts its own if the
binary is installed. Unit tests use fakeredis.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
import redis as sync_redis
from aiohttp import web
from fakeredis import FakeAsyncRedis
from redis import asyncio as aioredis

from gateway import apikeys
from gateway.config import GatewayConfig, parse_config
from gateway.invocation import AgentInvocation, Message, TextPart
from gateway.pipeline import Gateway
from gateway.server.app import create_app
from gateway.server.connection import GatewayRunner
from gateway.server.keys import GATEWAY
from gateway.store import ApiKey, Store
from tests.fakes.openai_upstream import FakeOpenAIUpstream


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a real Redis server for this test session."""
    url = os.environ.get("GATEWAY_TEST_REDIS_URL")
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("integration tests need redis-server: run `make test`, or install it")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        client = sync_redis.Redis.from_url(url)
        for _ in range(100):
            try:
                client.ping()
                break
            except sync_redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        try:
            yield url
        finally:
            proc.terminate()
            proc.wait()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the real Redis, emptied before the test."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def fake_store() -> AsyncIterator[Store]:
    """A store on fakeredis (with Lua), for fast unit tests."""
    store = Store(FakeAsyncRedis(decode_responses=True))
    yield store
    await store.aclose()


ECHO_CONFIG = """
backends:
  echo: {type: echo}
  slow: {type: echo, chunk_delay: 0.05}
routes:
  echo:
    backend: echo
    pricing: {input: 1, output: 2}
    max_output_tokens: 200
  free:
    backend: echo
  slow:
    backend: slow
    pricing: {input: 1, output: 2}
    max_output_tokens: 200
"""


def make_config(text: str = ECHO_CONFIG, redis_url: str = "embedded") -> GatewayConfig:
    """A checked configuration from YAML text, pointed at ``redis_url``."""
    config = parse_config(text, "test.yaml")
    from dataclasses import replace

    return replace(config, redis=replace(config.redis, url=redis_url))


@dataclass
class RunningGateway:
    url: str  # e.g. http://127.0.0.1:PORT
    gateway: Gateway

    @property
    def store(self) -> Store:
        return self.gateway.store

    async def new_key(self, balance: int = 1_000_000, agents: tuple[str, ...] = ()) -> str:
        _, secret = await self.store.create_key("test", balance=balance, agents=agents)
        return secret

    async def new_key_record(
        self,
        balance: int = 1_000_000,
        agents: tuple[str, ...] = (),
        expires_at: float | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key's record and secret."""
        return await self.store.create_key(
            "test", balance=balance, agents=agents, expires_at=expires_at
        )

    async def key_of(self, secret: str) -> ApiKey:
        """The record of the key with this secret, found by its digest."""
        key = await self.store.find_key(apikeys.digest(secret))
        assert key is not None, "no such key"
        return key


StartGateway = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture
async def start_gateway(
    redis_client: aioredis.Redis, redis_url: str
) -> AsyncIterator[StartGateway]:
    """Start gateways on loopback against the real Redis; stopped after the test.

    ``await start_gateway()`` uses ``ECHO_CONFIG``; pass YAML text for another, and
    ``redis=URL`` for another store than the session's Redis.
    """
    runners: list[web.AppRunner] = []

    async def start(text: str = ECHO_CONFIG, *, redis: str | None = None) -> RunningGateway:
        app = create_app(make_config(text, redis or redis_url))
        runner = GatewayRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return RunningGateway(f"http://127.0.0.1:{port}", app[GATEWAY])

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def fake_upstream() -> AsyncIterator[FakeOpenAIUpstream]:
    """A fake OpenAI-compatible upstream on loopback (``tests/fakes/openai_upstream.py``)."""
    upstream = await FakeOpenAIUpstream().start()
    yield upstream
    await upstream.close()


def invocation(text: str = "hello there", **fields: object) -> AgentInvocation:
    """A one-message invocation of agent ``echo``; ``fields`` override the rest."""
    base: dict[str, object] = {
        "agent": "echo",
        "input": (Message("user", (TextPart(text),)),),
    }
    base.update(fields)
    return AgentInvocation(**base)  # type: ignore[arg-type]
