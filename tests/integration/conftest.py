"""Fixtures for the integration tests: SDK clients and a raw HTTP session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
import openai
import pytest

from tests.conftest import RunningGateway
from tests.integration.a2a_support import a2a_client  # noqa: F401  (a fixture)
from tests.integration.cluster import redis_cluster_url  # noqa: F401  (a fixture)
from tests.integration.processes import gateway_processes  # noqa: F401  (a fixture)
from tests.integration.responses_support import Clients

UPSTREAM_SECRET = "sk-upstream-secret-from-env"

MakeClient = Callable[..., openai.AsyncOpenAI]


@pytest.fixture
async def sdk() -> AsyncIterator[MakeClient]:
    """``sdk(gw, key, prefix="/v1")``: an ``AsyncOpenAI`` client of a gateway, closed after."""
    clients: list[openai.AsyncOpenAI] = []

    def make(gw: RunningGateway, key: str, prefix: str = "/v1") -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(
            base_url=f"{gw.url}{prefix}", api_key=key, max_retries=0, timeout=10.0
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A raw HTTP client, for bodies and headers the SDK would never send."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
def upstream_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """The upstream secret in ``FAKE_UPSTREAM_KEY``, as ``upstream_config`` names it."""
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", UPSTREAM_SECRET)
    return UPSTREAM_SECRET


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    """Makes openai SDK clients for the Responses tests; checks and closes them after."""
    made = Clients()
    try:
        yield made
        made.check()
    finally:
        await made.aclose()
