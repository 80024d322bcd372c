"""The ``a2a`` backend end to end: a client of the gateway (the OpenAI SDK, and the
gateway's own A2A door) -> gateway -> a real A2A agent served by the official
``a2a-sdk`` server (Starlette under uvicorn, on loopback)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import openai
import pytest
import uvicorn
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.helpers.proto_helpers import get_message_text, new_task_from_user_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import a2a_pb2 as a2a
from starlette.applications import Starlette

from tests.conftest import StartGateway, free_port
from tests.integration.conftest import MakeClient
from tests.integration.support import settled, usage_entries

AGENT_KEY = "sk-remote-agent-key"


@dataclass
class Shouter(AgentExecutor):
    """Answers in capitals, a word per artifact chunk; fails on 'fail'."""

    seen: list[tuple[str, str]] = field(default_factory=list)  # (text, authorization)

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None
        text = get_message_text(context.message)
        headers = context.call_context.state.get("headers", {})
        self.seen.append((text, headers.get("authorization", "")))
        task = context.current_task or new_task_from_user_message(context.message)
        await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        if "fail" in text:
            await updater.failed(updater.new_agent_message([a2a.Part(text="I cannot do that")]))
            return
        words = text.split("The new message:")[-1].split()
        for i, word in enumerate(words):
            await updater.add_artifact(
                [a2a.Part(text=word.upper() + " ")], artifact_id="shout", append=i > 0
            )
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


@dataclass
class RemoteAgent:
    url: str
    executor: Shouter


@pytest.fixture
async def remote_agent() -> AsyncIterator[RemoteAgent]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    card = a2a.AgentCard(
        name="shouter",
        description="Answers in capitals",
        version="1.0",
        supported_interfaces=[
            a2a.AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=a2a.AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[a2a.AgentSkill(id="shout", name="Shout", description="Shouts", tags=["x"])],
    )
    executor = Shouter()
    handler = DefaultRequestHandler(executor, InMemoryTaskStore(), card)
    app = Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/")])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn says so by this flag alone)
        await asyncio.sleep(0.01)
    yield RemoteAgent(url, executor)
    server.should_exit = True
    await serving


def config(url: str) -> str:
    return f"""
backends:
  remote: {{type: a2a, base_url: "{url}", api_key_env: REMOTE_AGENT_KEY}}
routes:
  shouter:
    backend: remote
    pricing: {{input: 1, output: 2}}
"""


async def test_an_a2a_agent_answers_any_client_and_is_billed_by_estimate(
    start_gateway: StartGateway,
    sdk: MakeClient,
    remote_agent: RemoteAgent,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REMOTE_AGENT_KEY", AGENT_KEY)
    gw = await start_gateway(config(remote_agent.url))
    key = await gw.new_key()
    key_id = (await gw.key_of(key)).id
    client = sdk(gw, key)
    hello = [{"role": "user", "content": "hello there friend"}]
    reply = await client.chat.completions.create(model="shouter", messages=hello)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "HELLO THERE FRIEND "
    assert remote_agent.executor.seen == [("hello there friend", f"Bearer {AGENT_KEY}")]
    stream = await client.chat.completions.create(
        model="shouter",
        messages=hello,
        stream=True,  # type: ignore[arg-type]
    )
    pieces = [c.choices[0].delta.content async for c in stream if c.choices]
    assert "".join(p or "" for p in pieces) == "HELLO THERE FRIEND "
    assert len([p for p in pieces if p]) == 3  # a chunk per word, as the agent sent them
    # The agent reports no usage: the gateway's estimate is billed, and says so.
    await settled(gw, key_id)
    entries = await usage_entries(gw, key_id, count=2)
    assert all(e.usage is not None and e.usage.estimated for e in entries)
    assert 1_000_000 - sum(-e.amount for e in entries) == await gw.store.balance(key_id)


async def test_the_agents_failure_and_the_conversation_so_far(
    start_gateway: StartGateway,
    sdk: MakeClient,
    remote_agent: RemoteAgent,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REMOTE_AGENT_KEY", AGENT_KEY)
    gw = await start_gateway(config(remote_agent.url))
    key = await gw.new_key()
    client = sdk(gw, key)
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(
            model="shouter", messages=[{"role": "user", "content": "please fail"}]
        )
    assert caught.value.status_code == 502
    assert "I cannot do that" in caught.value.message
    # An earlier turn reaches the agent as a transcript before the new message.
    turns = [
        {"role": "system", "content": "be loud"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "HI"},
        {"role": "user", "content": "again now"},
    ]
    reply = await client.chat.completions.create(model="shouter", messages=turns)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "AGAIN NOW "
    sent, _ = remote_agent.executor.seen[-1]
    assert "[system] be loud" in sent and "[user] hi\n[assistant] HI" in sent


async def test_an_a2a_agent_behind_the_gateways_own_a2a_door(
    start_gateway: StartGateway, remote_agent: RemoteAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A2A in and out: the gateway meters an agent-to-agent call like any other."""
    monkeypatch.setenv("REMOTE_AGENT_KEY", AGENT_KEY)
    gw = await start_gateway(config(remote_agent.url))
    key = await gw.new_key()
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as http:
        card = await A2ACardResolver(http, f"{gw.url}/a2a/shouter").get_agent_card()
        client = ClientFactory(ClientConfig(httpx_client=http)).create(card)
        msg = a2a.Message(message_id="m1", role=a2a.ROLE_USER, parts=[a2a.Part(text="so far")])
        events = [e async for e in client.send_message(a2a.SendMessageRequest(message=msg))]
    final = events[-1].status_update
    assert final.status.state == a2a.TASK_STATE_COMPLETED
    assert "".join(p.text for e in events for p in e.artifact_update.artifact.parts) == "SO FAR "
    assert final.metadata["usage"]["estimated"] is True
    assert final.metadata["cost"]["credits"] > 0
