"""The official A2A SDK's client (``a2a-sdk``) for the A2A tests: made from an agent's
card, with the gateway's key; small factories for messages and streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.types import a2a_pb2 as a2a

from tests.conftest import RunningGateway

MakeA2A = Callable[..., Awaitable[Client]]


@pytest.fixture
async def a2a_client() -> AsyncIterator[MakeA2A]:
    """``await a2a_client(gw, key, agent)``: an SDK client made from the agent's card."""
    https: list[httpx.AsyncClient] = []

    async def make(gw: RunningGateway, key: str, agent: str = "echo", **config: Any) -> Client:
        http = httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=10)
        https.append(http)
        card = await A2ACardResolver(http, f"{gw.url}/a2a/{agent}").get_agent_card()
        return ClientFactory(ClientConfig(httpx_client=http, **config)).create(card)

    yield make
    for http in https:
        await http.aclose()


def message(text: str, context_id: str = "", task_id: str = "") -> a2a.SendMessageRequest:
    msg = a2a.Message(
        message_id=f"m-{text[:8]}-{id(text)}",
        role=a2a.ROLE_USER,
        parts=[a2a.Part(text=text)],
        context_id=context_id,
        task_id=task_id,
    )
    return a2a.SendMessageRequest(message=msg)


def text_of(task: a2a.Task) -> str:
    return "".join(p.text for art in task.artifacts for p in art.parts)


def streamed_text(events: list[a2a.StreamResponse]) -> str:
    return "".join(p.text for e in events for p in e.artifact_update.artifact.parts)


async def collect(stream: AsyncIterator[a2a.StreamResponse]) -> list[a2a.StreamResponse]:
    return [event async for event in stream]
