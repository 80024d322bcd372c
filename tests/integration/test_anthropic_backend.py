"""The ``anthropic`` backend end to end: openai SDK -> gateway -> fake Anthropic Messages API.

What every backend does (text, tools, error statuses, failures mid-stream, timeouts, a
JSON answer to a stream request) is the backend contract's (``tests/contract``); the
gateway's side of it is tested once, over ``openai_chat``
(``test_openai_chat_backend.py``). Here: what is Anthropic's own."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.conftest import RunningGateway, StartGateway
from tests.fakes.anthropic_upstream import (
    FakeAnthropicUpstream,
    Script,
    text,
    thinking,
    tool_use,
)
from tests.integration.conftest import MakeClient
from tests.integration.support import usage_entries

HELLO: Any = [{"role": "user", "content": "hello claude"}]
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def anthropic_config(
    base_url: str,
    *,
    pricing: str = "{input: 1, output: 2}",
    route: str = "",
    **options: object,
) -> str:
    """A gateway.yaml with one ``anthropic`` backend at ``base_url`` (agent ``claude``)."""
    extra = "".join(f"    {k}: {v}\n" for k, v in options.items())
    return f"""
backends:
  anthropic:
    type: anthropic
    base_url: {base_url}
    api_key_env: FAKE_UPSTREAM_KEY
{extra}routes:
  claude:
    backend: anthropic
    model: claude-sonnet-4-5
    pricing: {pricing}
{route}"""


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropicUpstream]:
    upstream = await FakeAnthropicUpstream().start()
    yield upstream
    await upstream.close()


@pytest.fixture
async def gw(
    start_gateway: StartGateway, fake: FakeAnthropicUpstream, upstream_env: str
) -> RunningGateway:
    return await start_gateway(anthropic_config(fake.url))


# Requests and answers


async def test_chat_answer_and_what_the_upstream_receives(
    gw: RunningGateway, sdk: MakeClient, fake: FakeAnthropicUpstream, upstream_env: str
) -> None:
    key = await gw.new_key()
    client = sdk(gw, key)
    raw = await client.chat.completions.with_raw_response.create(
        model="claude", messages=HELLO, extra_headers={"X-Request-Id": "req-anthropic-1"}
    )
    reply = raw.parse()
    assert reply.choices[0].message.content == "Hello from Claude"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "claude"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (25, 15)

    received = fake.last
    assert received.path == "/v1/messages"
    assert received.headers.getall("x-api-key") == [upstream_env]
    assert received.headers["anthropic-version"] == "2023-06-01"
    assert received.headers["X-Request-Id"] == "req-anthropic-1"
    assert "Authorization" not in received.headers
    assert all(key not in value for value in received.headers.values())
    assert key not in json.dumps(received.body)
    assert received.body == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello claude"}]}],
        "stream": True,
    }


async def test_request_mapping(
    gw: RunningGateway, sdk: MakeClient, fake: FakeAnthropicUpstream
) -> None:
    client = sdk(gw, await gw.new_key())
    await client.chat.completions.create(
        model="claude",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_prev",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_prev", "content": "18C, sunny"},
            {"role": "user", "content": "and tomorrow?"},
        ],
        max_tokens=77,
        temperature=0.3,
        top_p=0.5,
        stop=["END"],
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    body = fake.last.body
    assert body["system"] == "You are terse.\n\nAnswer in French."
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_prev",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_prev", "content": "18C, sunny"},
                {"type": "text", "text": "and tomorrow?"},
            ],
        },
    ]
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather of a city",
            "input_schema": WEATHER["function"]["parameters"],
        }
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["max_tokens"] == 77
    assert (body["temperature"], body["top_p"]) == (0.3, 0.5)
    assert body["stop_sequences"] == ["END"]
    assert "metadata" not in body
    assert body["stream"] is True


async def test_max_tokens_from_request_route_then_gateway_default(
    start_gateway: StartGateway, sdk: MakeClient, fake: FakeAnthropicUpstream, upstream_env: str
) -> None:
    gw = await start_gateway(
        anthropic_config(fake.url, route="    max_output_tokens: 300\n", default_max_tokens=1234)
    )
    client = sdk(gw, await gw.new_key())
    await client.chat.completions.create(model="claude", messages=HELLO)
    assert fake.last.body["max_tokens"] == 300
    await client.chat.completions.create(model="claude", messages=HELLO, max_tokens=50)
    assert fake.last.body["max_tokens"] == 50

    # Neither sets one: the gateway reserves, and caps, its metering default.
    config = anthropic_config(fake.url) + "metering:\n  default_max_output_tokens: 1234\n"
    gw = await start_gateway(config)
    await sdk(gw, await gw.new_key()).chat.completions.create(model="claude", messages=HELLO)
    assert fake.last.body["max_tokens"] == 1234


async def test_thinking_comes_back_as_reasoning(
    gw: RunningGateway, http: aiohttp.ClientSession, fake: FakeAnthropicUpstream
) -> None:
    fake.script = Script(blocks=(thinking("Let me think", " hard."), text("42")))
    headers = {"Authorization": f"Bearer {await gw.new_key()}"}
    request = {"model": "claude", "messages": HELLO, "reasoning_effort": "low", "max_tokens": 2048}
    async with http.post(f"{gw.url}/v1/chat/completions", json=request, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        message = (await resp.json())["choices"][0]["message"]
    assert message["content"] == "42"
    assert message["reasoning_content"] == "Let me think hard."
    assert fake.last.body["thinking"] == {"type": "enabled", "budget_tokens": 1024}


# Open Responses


async def test_responses_api(
    gw: RunningGateway, sdk: MakeClient, fake: FakeAnthropicUpstream
) -> None:
    client = sdk(gw, await gw.new_key())
    response = await client.responses.create(
        model="claude",
        input="hello claude",
        instructions="Be kind.",
        max_output_tokens=256,
        safety_identifier="user-7",
    )
    assert response.status == "completed"
    assert response.output_text == "Hello from Claude"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (25, 15)
    body = fake.last.body
    assert body["system"] == "Be kind."
    assert body["max_tokens"] == 256
    assert body["metadata"] == {"user_id": "user-7"}
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hello claude"}]}
    ]

    fake.script = Script(
        blocks=(tool_use("get_weather", '{"city":', ' "Oslo"}', call_id="toolu_r"),)
    )
    tool: Any = {
        "type": "function",
        "name": "get_weather",
        "parameters": WEATHER["function"]["parameters"],
    }
    stream = await client.responses.create(
        model="claude", input="weather in Oslo?", tools=[tool], stream=True
    )
    events = [e async for e in stream]
    assert events[-1].type == "response.completed"
    final = events[-1].response
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("toolu_r", "get_weather", {"city": "Oslo"})
    ]
    assert fake.last.body["tools"][0]["input_schema"] == tool["parameters"]


# Metering


@pytest.mark.parametrize("stream", [False, True])
async def test_cache_usage_is_billed_exactly(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake: FakeAnthropicUpstream,
    upstream_env: str,
    stream: bool,
) -> None:
    fake.script = Script(
        usage={
            "input_tokens": 50,
            "cache_creation_input_tokens": 1000,
            "cache_read_input_tokens": 2000,
            "output_tokens": 1,
        },
        output_tokens=15,
    )
    pricing = "{input: 3, output: 15, cached_input: 0.3, cache_write: 3.75}"
    gw = await start_gateway(anthropic_config(fake.url, pricing=pricing))
    key, secret = await gw.new_key_record(balance=1_000_000)
    client = sdk(gw, secret)
    if stream:
        chunks = await client.chat.completions.create(
            model="claude", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        seen = [c async for c in chunks][-1].usage
    else:
        seen = (await client.chat.completions.create(model="claude", messages=HELLO)).usage
    assert seen is not None
    assert (seen.prompt_tokens, seen.completion_tokens) == (3050, 15)
    assert seen.prompt_tokens_details is not None
    assert seen.prompt_tokens_details.cached_tokens == 2000

    (entry,) = await usage_entries(gw, key.id)
    # 50 fresh * 3 + 2000 read * 0.3 + 1000 written * 3.75 + 15 out * 15
    assert entry.amount == -(150 + 600 + 3750 + 225) == -4725
    assert entry.usage is not None
    assert entry.usage.input_tokens == 3050
    assert entry.usage.cached_input_tokens == 2000
    assert entry.usage.cache_write_tokens == 1000
    assert entry.usage.output_tokens == 15
    assert not entry.usage.estimated
    assert (entry.agent, entry.backend) == ("claude", "anthropic")
    assert await gw.store.balance(key.id) == 1_000_000 - 4725


# Failures


async def test_a_missing_message_stop_is_an_error(
    gw: RunningGateway, sdk: MakeClient, fake: FakeAnthropicUpstream
) -> None:
    client = sdk(gw, await gw.new_key())
    fake.script = Script(send_message_stop=False)  # a clean HTTP end, but no message_stop
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model="claude", messages=HELLO)
    assert caught.value.status_code == 502
    assert "ended before the answer was complete" in caught.value.message


async def test_client_disconnect_closes_the_upstream_and_is_billed(
    gw: RunningGateway, fake: FakeAnthropicUpstream
) -> None:
    pieces = tuple(f"t{i} " for i in range(100))
    fake.script = Script(blocks=(text(*pieces),), chunk_delay=0.05)
    key, secret = await gw.new_key_record(balance=100_000)
    body = {"model": "claude", "messages": HELLO, "stream": True}
    headers = {"Authorization": f"Bearer {secret}"}
    k = 4
    received: list[str] = []
    async with aiohttp.ClientSession() as session:
        resp = await session.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers)
        assert resp.status == 200
        while len(received) < k:
            line = await asyncio.wait_for(resp.content.readline(), 5)
            assert line, "the stream ended early"
            if line.startswith(b"data: {"):
                content = orjson.loads(line[len(b"data: ") :])["choices"][0]["delta"].get("content")
                if content:
                    received.append(content)
        resp.close()
        closed_at = time.monotonic()
    assert received == list(pieces[:k])

    disconnect = await fake.wait_disconnect(timeout=2.0)
    assert disconnect.at - closed_at < 1.0
    assert fake.completed == 0

    (entry,) = await usage_entries(gw, key.id)
    assert entry.usage is not None and entry.usage.estimated  # no message_delta came: counted
    assert entry.usage.output_tokens >= k
    assert entry.amount < 0
    assert await gw.store.balance(key.id) == 100_000 + entry.amount


async def test_invalid_tool_arguments_are_a_400(
    gw: RunningGateway, sdk: MakeClient, fake: FakeAnthropicUpstream
) -> None:
    client = sdk(gw, await gw.new_key())
    messages: Any = [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "x"},
    ]
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="claude", messages=messages)
    assert fake.requests == []
