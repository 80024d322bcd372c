"""The /a2a door end to end, driven by the official A2A SDK's client (``a2a-sdk``).

Over the echo backend and over a Chat-Completions-only upstream: the card, send,
stream, get, list, cancel, resubscribe after a dropped stream, a multi-turn
context; the bill (the task's metadata, the ledger, the balance); auth.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import pytest
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.client.errors import A2AClientError
from a2a.types import a2a_pb2 as a2a
from a2a.utils.errors import TaskNotCancelableError, TaskNotFoundError
from google.protobuf.json_format import MessageToDict

from tests.conftest import RunningGateway, StartGateway
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.integration.support import upstream_config, usage_entries

CONFIG = """
backends:
  echo: {type: echo}
  slow: {type: echo, chunk_delay: 0.05}
routes:
  echo:
    backend: echo
    pricing: {input: 1, output: 2}
    a2a:
      description: Repeats what you say.
      skills: [{id: repeat, name: Repeat, description: Says it back, tags: [echo]}]
  slow:
    backend: slow
    pricing: {input: 1, output: 2}
  other:
    backend: echo
"""

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


async def collect(stream: AsyncIterator[a2a.StreamResponse]) -> list[a2a.StreamResponse]:
    return [event async for event in stream]


async def test_the_card_describes_the_route_and_how_to_call_it(
    start_gateway: StartGateway, a2a_client: MakeA2A, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(CONFIG)
    key = await gw.new_key()
    async with http.get(f"{gw.url}/a2a/echo/.well-known/agent-card.json") as r:
        assert r.status == 200
        card = await r.json()
    assert card["name"] == "echo" and card["description"] == "Repeats what you say."
    assert card["supportedInterfaces"] == [
        {"url": f"{gw.url}/a2a/echo", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
    ]
    assert card["capabilities"]["streaming"] is True
    assert card["skills"][0]["id"] == "repeat"
    scheme = card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]
    assert scheme["scheme"] == "Bearer"
    assert "sk-" not in str(card)  # nothing secret: no key, no upstream, no price
    client = await a2a_client(gw, key)  # the SDK's own resolver and client factory
    events = await collect(client.send_message(message("hello there")))
    assert events[0].task.status.state == a2a.TASK_STATE_SUBMITTED
    assert events[-1].status_update.status.state == a2a.TASK_STATE_COMPLETED


async def test_a_streamed_task_sends_its_text_as_it_comes_and_ends_completed(
    start_gateway: StartGateway, a2a_client: MakeA2A
) -> None:
    gw = await start_gateway(CONFIG)
    key = await gw.new_key()
    client = await a2a_client(gw, key)
    events = await collect(client.send_message(message("one two three four")))
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[0] == "task" and kinds[1] == "status_update" and kinds[-1] == "status_update"
    assert events[1].status_update.status.state == a2a.TASK_STATE_WORKING
    chunks = [e.artifact_update for e in events if e.HasField("artifact_update")]
    assert len(chunks) == 4  # one per word, as the echo agent streams them
    assert "".join(p.text for c in chunks for p in c.artifact.parts) == "one two three four"
    assert [c.append for c in chunks] == [False, True, True, True]
    assert len({c.artifact.artifact_id for c in chunks}) == 1
    final = events[-1].status_update
    task_id = events[0].task.id
    assert final.task_id == task_id and final.context_id == events[0].task.context_id
    assert final.status.state == a2a.TASK_STATE_COMPLETED
    stored = await client.get_task(a2a.GetTaskRequest(id=task_id))
    assert stored.status.state == a2a.TASK_STATE_COMPLETED
    assert text_of(stored) == "one two three four"


async def test_send_get_and_list_over_the_echo_backend(
    start_gateway: StartGateway, a2a_client: MakeA2A
) -> None:
    gw = await start_gateway(CONFIG)
    key = await gw.new_key()
    client = await a2a_client(gw, key, streaming=False)
    [event] = await collect(client.send_message(message("hello there agent")))
    task = event.task
    assert task.status.state == a2a.TASK_STATE_COMPLETED
    assert text_of(task) == "hello there agent"
    assert [m.role for m in task.history] == [a2a.ROLE_USER, a2a.ROLE_AGENT]
    got = await client.get_task(a2a.GetTaskRequest(id=task.id))
    assert MessageToDict(got) == MessageToDict(task)
    short = await client.get_task(a2a.GetTaskRequest(id=task.id, history_length=1))
    assert [m.role for m in short.history] == [a2a.ROLE_AGENT]
    listed = await client.list_tasks(a2a.ListTasksRequest())
    assert [t.id for t in listed.tasks] == [task.id] and listed.total_size == 1
    with pytest.raises(TaskNotFoundError):
        await client.get_task(a2a.GetTaskRequest(id="task-nope"))
