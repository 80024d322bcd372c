"""Open Responses over the ``openai_chat`` backend: the context the upstream receives,
instructions, ``allowed_tools``, reasoning/text/tool-call rendering, and failures.

Every answer is read raw and checked (``responses_support``): framing, event
models, sequence numbers, ids and the final response object.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionChunk

from tests.conftest import StartGateway
from tests.fakes.openai_upstream import FakeOpenAIUpstream, Script, ToolCallScript
from tests.integration.responses_support import (
    ChatUpstream,
    Clients,
    chat_config,
    check_error,
    chunk,
    create_json,
    create_stream,
    get_json,
    post_raw,
)
from tests.integration.support import eventually, upstream_config

TOOL_A: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
TOOL_B: Any = {
    "type": "function",
    "name": "get_time",
    "description": "time",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    "strict": True,
}


def roles(messages: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    out = []
    for m in messages:
        if m.get("tool_calls"):
            out.append(("assistant", [c["function"]["name"] for c in m["tool_calls"]]))
        elif m["role"] == "tool":
            out.append(("tool", m["content"]))
        else:
            out.append((m["role"], m["content"]))
    return out


@pytest.mark.parametrize("stream", [False, True])
async def test_chain_context_reaches_chat_upstream(
    start_gateway: StartGateway,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
    http: aiohttp.ClientSession,
    stream: bool,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    key = await gw.new_key()
    fake_upstream.enqueue(
        Script(content=("answer", " one")),
        Script(
            content=(), tool_calls=(ToolCallScript("get_time", ('{"zone"', ':"UTC"}'), "call_u1"),)
        ),
        Script(content=("it", " is", " noon")),
        Script(content=("answer", " four")),
    )

    async def turn(body: dict[str, Any]) -> dict[str, Any]:
        body = {"model": "up", **body}
        if stream:
            return (await create_stream(http, gw, key, body)).final
        return await create_json(http, gw, key, body)

    r1 = await turn({"input": "first", "instructions": "Instructions one."})
    assert r1["output"][0]["content"][0]["text"] == "answer one"
    r2 = await turn(
        {
            "input": [{"type": "message", "role": "user", "content": "second"}],
            "previous_response_id": r1["id"],
            "instructions": "Instructions two.",
            "tools": [TOOL_B],
        }
    )
    [call] = r2["output"]
    assert (call["type"], call["call_id"], call["name"]) == ("function_call", "call_u1", "get_time")
    assert call["arguments"] == '{"zone":"UTC"}'
    r3 = await turn(
        {
            "input": [{"type": "function_call_output", "call_id": "call_u1", "output": "12:00"}],
            "previous_response_id": r2["id"],
            "tools": [TOOL_B],
        }
    )
    r4 = await turn({"input": "fourth", "previous_response_id": r3["id"]})
    assert r4["previous_response_id"] == r3["id"]
    assert r4["instructions"] is None

    sent = [r.body["messages"] for r in fake_upstream.requests]
    assert roles(sent[0]) == [("system", "Instructions one."), ("user", "first")]
    # previous input, previous output, new input; the earlier instructions are not carried over
    assert roles(sent[1]) == [
        ("system", "Instructions two."),
        ("user", "first"),
        ("assistant", "answer one"),
        ("user", "second"),
    ]
    assert roles(sent[2]) == [
        ("user", "first"),
        ("assistant", "answer one"),
        ("user", "second"),
        ("assistant", ["get_time"]),
        ("tool", "12:00"),
    ]
    assert sent[2][3]["tool_calls"][0]["id"] == "call_u1"
    assert sent[2][3]["tool_calls"][0]["function"]["arguments"] == '{"zone":"UTC"}'
    assert sent[2][4]["tool_call_id"] == "call_u1"
    assert roles(sent[3]) == [
        *roles(sent[2]),
        ("assistant", "it is noon"),
        ("user", "fourth"),
    ]
    assert "tools" not in fake_upstream.requests[3].body  # tools are not carried over
    assert fake_upstream.requests[1].body["tools"][0]["function"]["name"] == "get_time"


async def test_instructions_first_system_message(
    start_gateway: StartGateway,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
    clients: Clients,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    client = clients(gw, await gw.new_key())
    response = await client.responses.create(
        model="up",
        instructions="You are a pirate.",
        input=[
            {"type": "message", "role": "developer", "content": "dev note"},
            {"type": "message", "role": "user", "content": "ahoy"},
        ],
        max_output_tokens=100,
        temperature=0.2,
        text={
            "format": {
                "type": "json_schema",
                "name": "reply",
                "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
                "strict": True,
            }
        },
        reasoning={"effort": "high"},
    )
    assert response.output_text == "Hello from upstream"
    assert response.instructions == "You are a pirate."
    body = fake_upstream.last.body
    assert body["messages"][0] == {"role": "system", "content": "You are a pirate."}
    assert roles(body["messages"]) == [
        ("system", "You are a pirate."),
        ("developer", "dev note"),
        ("user", "ahoy"),
    ]
    assert body["model"] == "upstream-model-x"
    assert body["max_completion_tokens"] == 100
    assert body["temperature"] == 0.2
    assert body["reasoning_effort"] == "high"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "reply",
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
            "strict": True,
        },
    }
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 3)


@pytest.mark.parametrize("mode", ["required", "auto", None])
async def test_allowed_tools_enforced(
    start_gateway: StartGateway,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
    http: aiohttp.ClientSession,
    mode: str | None,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    key = await gw.new_key()
    choice: dict[str, Any] = {
        "type": "allowed_tools",
        "tools": [{"type": "function", "name": "get_time"}],
    }
    if mode is not None:
        choice["mode"] = mode
    response = await create_json(
        http,
        gw,
        key,
        {"model": "up", "input": "what time", "tools": [TOOL_A, TOOL_B], "tool_choice": choice},
    )
    body = fake_upstream.last.body
    assert [t["function"]["name"] for t in body["tools"]] == ["get_time"]
    assert body["tool_choice"] == (mode or "auto")
    assert response["tool_choice"] == {
        "type": "allowed_tools",
        "tools": [{"type": "function", "name": "get_time"}],
        "mode": mode or "auto",
    }
    assert [t["name"] for t in response["tools"]] == ["get_weather", "get_time"]


async def test_allowed_tools_with_echo(start_gateway: StartGateway, clients: Clients) -> None:
    gw = await start_gateway()
    client = clients(gw, await gw.new_key())
    response = await client.responses.create(
        model="echo",
        input="what time is it",
        tools=[TOOL_A, TOOL_B],
        tool_choice={
            "type": "allowed_tools",
            "tools": [{"type": "function", "name": "get_time"}],
            "mode": "required",
        },
    )
    [call] = response.output
    assert call.type == "function_call" and call.name == "get_time"  # not the first tool
    assert response.tool_choice.to_dict() == {  # type: ignore[union-attr]
        "type": "allowed_tools",
        "tools": [{"type": "function", "name": "get_time"}],
        "mode": "required",
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("none", "none"),
        ("required", "required"),
        (
            {"type": "function", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
async def test_tool_choice_forms_reach_upstream(
    start_gateway: StartGateway,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
    http: aiohttp.ClientSession,
    choice: Any,
    expected: Any,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    key = await gw.new_key()
    response = await create_json(
        http,
        gw,
        key,
        {
            "model": "up",
            "input": "x",
            "tools": [TOOL_A, TOOL_B],
            "tool_choice": choice,
            "parallel_tool_calls": False,
        },
    )
    body = fake_upstream.last.body
    assert body["tool_choice"] == expected
    assert body["parallel_tool_calls"] is False
    assert [t["function"] for t in body["tools"]] == [
        {"name": "get_weather", "description": "weather", "parameters": TOOL_A["parameters"]},
        {
            "name": "get_time",
            "description": "time",
            "parameters": TOOL_B["parameters"],
            "strict": True,
        },
    ]
    assert response["tool_choice"] == choice


REASONING_THEN_TEXT_THEN_CALLS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"reasoning_content": "Let me "}),
    chunk({"reasoning_content": "think."}),
    chunk({"content": "Checking "}),
    chunk({"content": "both."}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_w",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_t",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"zone":"CET"}'},
                }
            ]
        }
    ),
    chunk({}, "tool_calls"),
    {
        **chunk(),
        "choices": [],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 7,
            "total_tokens": 16,
            "completion_tokens_details": {"reasoning_tokens": 2},
        },
    },
]


@pytest.fixture
async def chat_upstream() -> AsyncIterator[ChatUpstream]:
    upstream = await ChatUpstream().start()
    yield upstream
    await upstream.close()


async def test_reasoning_text_and_calls_from_chat_upstream(
    start_gateway: StartGateway,
    chat_upstream: ChatUpstream,
    http: aiohttp.ClientSession,
    clients: Clients,
) -> None:
    chat_upstream.chunks = REASONING_THEN_TEXT_THEN_CALLS
    gw = await start_gateway(chat_config(chat_upstream.url))
    key = await gw.new_key()
    body = {"model": "up", "input": "weather and time in Oslo", "tools": [TOOL_A, TOOL_B]}
    stream = await create_stream(http, gw, key, body)
    final = stream.final
    assert [i["type"] for i in final["output"]] == [
        "reasoning",
        "message",
        "function_call",
        "function_call",
    ]
    reasoning, message, weather, time_call = final["output"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Let me think."}]
    assert message["content"][0]["text"] == "Checking both."
    assert (weather["call_id"], weather["name"], weather["arguments"]) == (
        "call_w",
        "get_weather",
        '{"city":"Oslo"}',
    )
    assert (time_call["call_id"], time_call["arguments"]) == ("call_t", '{"zone":"CET"}')
    assert [e["output_index"] for e in stream.of("response.output_item.added")] == [0, 1, 2, 3]
    deltas = stream.of("response.reasoning_summary_text.delta")
    assert "".join(e["delta"] for e in deltas) == "Let me think."
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] == 2
    assert final["usage"]["input_tokens"] == 9
    # the same items without streaming, and through the SDK
    plain = await create_json(http, gw, key, body)
    assert [i["type"] for i in plain["output"]] == [i["type"] for i in final["output"]]
    sdk_response = await clients(gw, key).responses.create(**body)
    assert [i.type for i in sdk_response.output] == [i["type"] for i in final["output"]]
    # The reasoning and calls become context of the next turn.
    chat_upstream.chunks = [chunk({"content": "done"}), chunk({}, "stop")]
    await create_json(
        http,
        gw,
        key,
        {
            "model": "up",
            "previous_response_id": plain["id"],
            "input": [
                {"type": "function_call_output", "call_id": "call_w", "output": "rain"},
                {"type": "function_call_output", "call_id": "call_t", "output": "noon"},
            ],
        },
    )
    messages = chat_upstream.requests[-1]["messages"]
    assert roles(messages) == [
        ("user", "weather and time in Oslo"),
        ("assistant", ["get_weather", "get_time"]),
        ("tool", "rain"),
        ("tool", "noon"),
    ]
    assert messages[1]["content"] == "Checking both."


async def test_chat_completions_in_reasoning_and_tools_out(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(
        """
backends:
  think: {type: echo, reasoning: true}
routes:
  thinker: {backend: think}
"""
    )
    key = await gw.new_key()
    tool = {"type": "function", "function": {k: v for k, v in TOOL_A.items() if k != "type"}}
    async with http.post(
        f"{gw.url}/v1/chat/completions",
        json={
            "model": "thinker",
            "messages": [{"role": "user", "content": "weather?"}],
            "tools": [tool],
            "stream": True,
        },
        headers={"Authorization": f"Bearer {key}"},
    ) as resp:
        assert resp.status == 200
        raw = await resp.read()
    frames = [f for f in raw.decode().split("\n\n") if f]
    assert frames[-1] == "data: [DONE]"
    chunks = []
    for frame in frames[:-1]:
        assert frame.startswith("data: ")
        chunks.append(ChatCompletionChunk.model_validate(orjson.loads(frame[len("data: ") :])))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    assert reasoning.startswith("The user wants")
    calls = [tc for d in deltas for tc in d.tool_calls or ()]
    assert calls[0].id and calls[0].function is not None
    assert calls[0].function.name == "get_weather"
    arguments = "".join((tc.function.arguments or "") for tc in calls if tc.function)
    assert json.loads(arguments) == {"city": "echo"}
    first_call = next(i for i, d in enumerate(deltas) if d.tool_calls)
    last_reasoning = max(i for i, d in enumerate(deltas) if getattr(d, "reasoning_content", None))
    assert last_reasoning < first_call
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_echo_reasoning_over_responses(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(
        """
backends:
  think: {type: echo, reasoning: true}
routes:
  thinker: {backend: think}
"""
    )
    key = await gw.new_key()
    stream = await create_stream(http, gw, key, {"model": "thinker", "input": "hi there"})
    assert [i["type"] for i in stream.final["output"]] == ["reasoning", "message"]
    assert stream.types[2:6] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
    ]
    assert stream.final["usage"]["output_tokens_details"]["reasoning_tokens"] > 0


# Failures


@pytest.mark.parametrize("how", ["cut", "error_chunk"])
async def test_failure_mid_stream(
    start_gateway: StartGateway,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
    http: aiohttp.ClientSession,
    how: str,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    key = await gw.new_key()
    content = ("one", " two", " three", " four")
    fake_upstream.script = (
        Script(content=content, cut_after=2)
        if how == "cut"
        else Script(content=content, error_after=2)
    )
    stream = await create_stream(http, gw, key, {"model": "up", "input": "x"})
    assert stream.types[-2:] == ["error", "response.failed"]
    error = stream.events[-2]["error"]
    assert error["type"] == "upstream_error"
    assert "message" in error and "param" in error and "code" in error
    final = stream.final
    assert final["status"] == "failed"
    assert final["error"]["message"] == error["message"]
    assert stream.text == "one two"
    # The partial item is finished (incomplete) before the failure.
    assert final["output"][0]["status"] == "incomplete"
    # The failed response is stored as the client saw it.
    status, stored = await get_json(http, gw, key, f"responses/{final['id']}")
    assert status == 200 and stored["status"] == "failed"


async def test_background_failure_is_stored(
    start_gateway: StartGateway,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url, always_stream="true"))
    key = await gw.new_key()
    fake_upstream.script = Script(content=("a", " b", " c", " d"), chunk_delay=0.05, cut_after=3)
    started = await create_json(http, gw, key, {"model": "up", "input": "x", "background": True})
    assert started["status"] in ("queued", "in_progress") and started["background"] is True

    async def failed() -> dict[str, Any] | None:
        _, body = await get_json(http, gw, key, f"responses/{started['id']}")
        return body if body["status"] != "in_progress" else None

    final = await eventually(failed, within=5.0)
    assert final["status"] == "failed"
    assert final["error"]["code"] and final["error"]["message"]
    assert final["output"][0]["status"] == "incomplete"


async def test_sdk_raises_on_error_event(
    start_gateway: StartGateway,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
    clients: Clients,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    client = clients(gw, await gw.new_key())
    fake_upstream.script = Script(content=("one", " two", " three"), error_after=1)
    seen = []
    stream = await client.responses.create(model="up", input="x", stream=True)
    with pytest.raises(openai.APIError) as caught:
        async for event in stream:
            seen.append(event.type)
    assert "overloaded" in caught.value.message
    assert "response.output_text.delta" in seen
    with pytest.raises(openai.APIError):
        async with client.responses.stream(model="up", input="x") as helper:
            await helper.get_final_response()


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "script",
    [
        Script(content=("a", "b"), cut_after=0),
        Script(status=500),
        Script(content=("a",), error_after=0),
    ],
    ids=["cut-before-output", "http-500", "error-chunk-first"],
)
async def test_failure_before_output_is_http_502(
    start_gateway: StartGateway,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
    http: aiohttp.ClientSession,
    script: Script,
    stream: bool,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url, always_stream="true"))
    key = await gw.new_key()
    fake_upstream.script = script
    status, content_type, raw = await post_raw(
        http, gw, key, {"model": "up", "input": "x", "stream": stream}
    )
    assert status == 502, raw[:300]
    assert content_type.startswith("application/json")
    error = check_error(orjson.loads(raw), status)
    assert error["type"] == "upstream_error"


async def test_upstream_400_before_output(
    start_gateway: StartGateway,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    key = await gw.new_key()
    fake_upstream.script = Script(status=400)
    status, _, raw = await post_raw(http, gw, key, {"model": "up", "input": "x", "stream": True})
    assert status == 400
    check_error(orjson.loads(raw), status)
