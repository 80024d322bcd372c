"""Chat Completions through the official openai SDK, against the echo backend."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import StartGateway
from tests.integration.conftest import MakeClient

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 2},
                "days": {"type": "integer", "minimum": 1},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "days", "unit"],
            "additionalProperties": False,
        },
    },
}


def assert_weather_arguments(arguments: str) -> None:
    args = json.loads(arguments)
    assert set(args) == {"city", "days", "unit"}
    assert isinstance(args["city"], str) and len(args["city"]) >= 2
    assert isinstance(args["days"], int) and args["days"] >= 1
    assert args["unit"] in ("celsius", "fahrenheit")


@pytest.mark.parametrize("prefix", ["/v1", "/api/agents/v1"])
async def test_non_streaming(start_gateway: StartGateway, sdk: MakeClient, prefix: str) -> None:
    gw = await start_gateway()
    client = sdk(gw, await gw.new_key(), prefix)
    reply = await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "the quick brown fox"}]
    )
    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-")
    assert reply.model == "echo"
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "the quick brown fox"
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 4
    assert reply.usage.prompt_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 4


@pytest.mark.parametrize("prefix", ["/v1", "/api/agents/v1"])
async def test_streaming(start_gateway: StartGateway, sdk: MakeClient, prefix: str) -> None:
    gw = await start_gateway()
    client = sdk(gw, await gw.new_key(), prefix)
    text = "one two three four five six"
    stream = await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": text}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert len(chunks) >= 3
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert all(c.model == "echo" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert content == text
    assert len([c for c in chunks if c.choices[0].delta.content]) == 6  # one delta per word
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert all(c.usage is None for c in chunks)  # usage only when asked for


async def test_stream_usage_chunk(start_gateway: StartGateway, sdk: MakeClient) -> None:
    gw = await start_gateway()
    client = sdk(gw, await gw.new_key())
    stream = await client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "count these five words"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 4
    assert last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None and len(c.choices) == 1 for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"


async def test_tool_call(start_gateway: StartGateway, sdk: MakeClient) -> None:
    gw = await start_gateway()
    client = sdk(gw, await gw.new_key())
    reply = await client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[WEATHER_TOOL],
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert_weather_arguments(call.function.arguments)


async def test_tool_result_round_trip(start_gateway: StartGateway, sdk: MakeClient) -> None:
    gw = await start_gateway()
    client = sdk(gw, await gw.new_key())
    reply = await client.chat.completions.create(
        model="echo",
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == "The tool returned: sunny"


async def test_streamed_tool_call_with_stream_helper(
    start_gateway: StartGateway, sdk: MakeClient
) -> None:
    gw = await start_gateway()
    client = sdk(gw, await gw.new_key())
    seen_argument_deltas = 0
    async with client.chat.completions.stream(
        model="echo",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[WEATHER_TOOL],
    ) as stream:
        async for event in stream:
            if event.type == "tool_calls.function.arguments.delta":
                seen_argument_deltas += 1
        final = await stream.get_final_completion()
    assert seen_argument_deltas >= 2
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert_weather_arguments(call.function.arguments)


async def test_streamed_tool_call_deltas(start_gateway: StartGateway, sdk: MakeClient) -> None:
    gw = await start_gateway()
    client = sdk(gw, await gw.new_key())
    stream = await client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    deltas = []
    finish = None
    async for chunk in stream:
        choice = chunk.choices[0]
        deltas.extend(choice.delta.tool_calls or ())
        finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    first, *rest = deltas
    assert first.index == 0
    assert first.id is not None and first.id.startswith("call_")
    assert first.type == "function"
    assert first.function is not None and first.function.name == "get_weather"
    assert first.function.arguments == ""
    assert rest and all(d.index == 0 and d.id is None for d in rest)
    assert all(d.function is not None and d.function.arguments for d in rest)
    assert_weather_arguments("".join(d.function.arguments or "" for d in rest if d.function))


async def test_developer_and_system_roles(start_gateway: StartGateway, sdk: MakeClient) -> None:
    gw = await start_gateway()
    client = sdk(gw, await gw.new_key())
    reply = await client.chat.completions.create(
        model="echo",
        messages=[
            {"role": "system", "content": "You are a parrot."},
            {"role": "developer", "content": "Answer briefly."},
            {"role": "user", "content": [{"type": "text", "text": "polly wants"}]},
        ],
    )
    assert reply.choices[0].message.content == "polly wants"


async def test_max_tokens_reaches_the_backend(start_gateway: StartGateway, sdk: MakeClient) -> None:
    gw = await start_gateway()
    client = sdk(gw, await gw.new_key())
    for field in ("max_tokens", "max_completion_tokens"):
        reply = await client.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "one two three four five"}],
            **{field: 2},  # type: ignore[arg-type]
        )
        assert reply.choices[0].message.content == "one two "
        assert reply.choices[0].finish_reason == "length"
        assert reply.usage is not None and reply.usage.completion_tokens == 2


async def test_sampling_fields_accepted(start_gateway: StartGateway, sdk: MakeClient) -> None:
    gw = await start_gateway()
    client = sdk(gw, await gw.new_key())
    reply = await client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "hello"}],
        temperature=0.2,
        top_p=0.9,
        stop=["\n"],
        response_format={"type": "json_object"},
        seed=7,
        user="someone",
        metadata={"team": "a"},
    )
    assert reply.choices[0].message.content == "hello"


@pytest.mark.parametrize("prefix", ["/v1", "/api/agents/v1"])
async def test_models_lists_what_the_key_may_call(
    start_gateway: StartGateway, sdk: MakeClient, prefix: str
) -> None:
    gw = await start_gateway()
    everything = sdk(gw, await gw.new_key(), prefix)
    models = [m async for m in everything.models.list()]
    assert sorted(m.id for m in models) == ["echo", "free", "slow"]
    assert all(m.object == "model" and m.owned_by for m in models)

    restricted = sdk(gw, await gw.new_key(agents=("free", "slow")), prefix)
    assert sorted([m.id async for m in restricted.models.list()]) == ["free", "slow"]
