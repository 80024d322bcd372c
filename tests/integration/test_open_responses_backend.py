"""The ``open_responses`` backend end to end: SDK -> gateway -> fake Open Responses upstream.

Clients speak both dialects (Chat Completions and Open Responses, through the
official SDK); every ``/responses`` answer the SDK receives is validated
(``responses_support.Clients``). Error statuses and a JSON answer to a stream request
are the backend contract's (``tests/contract``), and the gateway's side of them is
tested over ``openai_chat`` (``test_openai_chat_backend.py``).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import StartGateway
from tests.fakes.open_responses_upstream import (
    FakeResponsesUpstream,
    FunctionCallScript,
    ResponsesScript,
)
from tests.integration.conftest import MakeClient
from tests.integration.responses_support import Clients, create_stream
from tests.integration.support import usage_entries

HELLO: Any = [{"role": "user", "content": "hello upstream"}]
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
WEATHER_CHAT: Any = {
    "type": "function",
    "function": {k: v for k, v in WEATHER.items() if k != "type"},
}


def responses_config(
    base_url: str, *, pricing: str = "{input: 1, output: 2}", **options: object
) -> str:
    """A gateway.yaml with one ``open_responses`` backend at ``base_url`` (agent ``up``)."""
    extra = "".join(f"    {k}: {v}\n" for k, v in options.items())
    return f"""
backends:
  upstream:
    type: open_responses
    base_url: {base_url}
    api_key_env: FAKE_UPSTREAM_KEY
{extra}routes:
  up:
    backend: upstream
    model: upstream-model-x
    pricing: {pricing}
"""


@pytest.fixture
async def upstream() -> AsyncIterator[FakeResponsesUpstream]:
    fake = await FakeResponsesUpstream().start()
    yield fake
    await fake.close()


async def test_upstream_request(
    start_gateway: StartGateway,
    clients: Clients,
    upstream: FakeResponsesUpstream,
    upstream_env: str,
) -> None:
    gw = await start_gateway(responses_config(upstream.base_url))
    key = await gw.new_key()
    client = clients(gw, key)
    response = await client.responses.create(
        model="up",
        input="hello upstream",
        instructions="be brief",
        tools=[WEATHER],
        tool_choice="auto",
        temperature=0.4,
        max_output_tokens=100,
        reasoning={"effort": "low", "summary": "auto"},
        metadata={"trace": "t1"},
        text={"format": {"type": "json_schema", "name": "o", "schema": {"type": "object"}}},
    )
    assert response.output_text == "Hello from responses"
    received = upstream.last
    assert received.path == "/v1/responses"
    assert received.headers["Authorization"] == f"Bearer {upstream_env}"
    assert key not in str(dict(received.headers))
    body = received.body
    assert body["model"] == "upstream-model-x"
    assert body["stream"] is True and body["store"] is False
    assert body["input"] == [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "hello upstream"}],
        }
    ]
    assert body["instructions"] == "be brief"
    assert body["tools"] == [WEATHER]
    assert body["tool_choice"] == "auto"
    assert body["temperature"] == 0.4
    assert body["max_output_tokens"] == 100
    assert body["reasoning"] == {"effort": "low", "summary": "auto"}
    assert body["metadata"] == {"trace": "t1"}
    assert body["text"]["format"]["type"] == "json_schema"


async def test_env_secret_and_request_id_never_the_client_key(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    sdk: MakeClient,
    upstream: FakeResponsesUpstream,
    upstream_env: str,
) -> None:
    gw = await start_gateway(responses_config(upstream.base_url))
    key = await gw.new_key()
    await sdk(gw, key).chat.completions.create(model="up", messages=HELLO)
    stream = await sdk(gw, key).responses.create(model="up", input="x", stream=True)
    _ = [e async for e in stream]
    headers = {"Authorization": f"Bearer {key}", "X-Request-Id": "req-trace-42"}
    body = {"model": "up", "messages": HELLO}
    async with http.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["X-Request-Id"] == "req-trace-42"
    assert len(upstream.requests) == 3
    for received in upstream.requests:
        assert received.headers["Authorization"] == f"Bearer {upstream_env}"
        assert key not in str(dict(received.headers)) and key not in str(received.body)
    assert upstream.last.headers["X-Request-Id"] == "req-trace-42"


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_client(
    start_gateway: StartGateway,
    sdk: MakeClient,
    upstream: FakeResponsesUpstream,
    upstream_env: str,
    stream: bool,
) -> None:
    upstream.script = ResponsesScript(reasoning=("hmm",), content=("a", "b", "c"))
    gw = await start_gateway(responses_config(upstream.base_url))
    client = sdk(gw, await gw.new_key())
    if stream:
        chunks = [
            c
            async for c in await client.chat.completions.create(
                model="up", messages=HELLO, stream=True
            )
        ]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "abc"
        reasoning = [
            getattr(c.choices[0].delta, "reasoning_content", None) for c in chunks if c.choices
        ]
        assert "hmm" in reasoning
        assert chunks[-1].choices[0].finish_reason == "stop"
    else:
        reply = await client.chat.completions.create(model="up", messages=HELLO)
        assert reply.choices[0].message.content == "abc"
        assert reply.choices[0].finish_reason == "stop"
        assert reply.usage is not None
        assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (13, 5)
    assert upstream.last.body["stream"] is True  # the upstream always streams


@pytest.mark.parametrize("stream", [False, True])
async def test_responses_client_with_reasoning(
    start_gateway: StartGateway,
    clients: Clients,
    upstream: FakeResponsesUpstream,
    upstream_env: str,
    stream: bool,
) -> None:
    upstream.script = ResponsesScript(
        reasoning=("step ", "one"), reasoning_events="summary", content=("Paris",)
    )
    gw = await start_gateway(responses_config(upstream.base_url))
    client = clients(gw, await gw.new_key())
    if stream:
        async with client.responses.stream(model="up", input="capital?") as events:
            final = await events.get_final_response()
    else:
        final = await client.responses.create(model="up", input="capital?")
    assert final.status == "completed"
    assert final.output_text == "Paris"
    kinds = [item.type for item in final.output]
    assert kinds == ["reasoning", "message"]
    assert final.usage is not None and final.usage.input_tokens == 13


@pytest.mark.parametrize("argument_deltas", [True, False])
async def test_function_calls_chat_client(
    start_gateway: StartGateway,
    sdk: MakeClient,
    upstream: FakeResponsesUpstream,
    upstream_env: str,
    argument_deltas: bool,
) -> None:
    calls = (
        FunctionCallScript("get_weather", ('{"ci', 'ty": "Pa', 'ris"}'), call_id="call_up_1"),
        FunctionCallScript("get_weather", ('{"city": "Rome"}',), call_id="call_up_2"),
    )
    upstream.script = ResponsesScript(
        content=(), function_calls=calls, argument_deltas=argument_deltas
    )
    gw = await start_gateway(responses_config(upstream.base_url))
    client = sdk(gw, await gw.new_key())
    async with client.chat.completions.stream(
        model="up", messages=HELLO, tools=[WEATHER_CHAT]
    ) as stream:
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    got = [
        (c.id, c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls
    ]  # type: ignore[union-attr]
    assert got == [
        ("call_up_1", "get_weather", {"city": "Paris"}),
        ("call_up_2", "get_weather", {"city": "Rome"}),
    ]
    assert upstream.last.body["tools"] == [WEATHER]  # flat, as Responses wants


@pytest.mark.parametrize("stream", [False, True])
async def test_function_call_round_trip_responses_client(
    start_gateway: StartGateway,
    clients: Clients,
    upstream: FakeResponsesUpstream,
    upstream_env: str,
    stream: bool,
) -> None:
    call = FunctionCallScript("get_weather", ('{"city":', '"Paris"}'), call_id="call_w")
    upstream.enqueue(
        ResponsesScript(content=(), function_calls=(call,), argument_done=False),
        ResponsesScript(content=("It is sunny.",)),
    )
    gw = await start_gateway(responses_config(upstream.base_url))
    client = clients(gw, await gw.new_key())
    if stream:
        async with client.responses.stream(model="up", input="weather?", tools=[WEATHER]) as s:
            first = await s.get_final_response()
    else:
        first = await client.responses.create(model="up", input="weather?", tools=[WEATHER])
    [item] = first.output
    assert item.type == "function_call"
    assert (item.call_id, item.name, item.arguments) == (
        "call_w",
        "get_weather",
        '{"city":"Paris"}',
    )

    second = await client.responses.create(
        model="up",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "call_w", "output": "sunny"}],
        tools=[WEATHER],
    )
    assert second.output_text == "It is sunny."
    # The gateway kept the state: the upstream gets the whole context (store: false).
    context = upstream.last.body["input"]
    assert [i.get("type") for i in context] == ["message", "function_call", "function_call_output"]
    assert context[1]["call_id"] == "call_w" and context[1]["arguments"] == '{"city":"Paris"}'
    assert upstream.last.body.get("previous_response_id") is None


@pytest.mark.parametrize("stream", [False, True])
async def test_usage_is_billed_exactly(
    start_gateway: StartGateway,
    sdk: MakeClient,
    upstream: FakeResponsesUpstream,
    upstream_env: str,
    stream: bool,
) -> None:
    usage = {
        "input_tokens": 1234,
        "output_tokens": 567,
        "total_tokens": 1801,
        "input_tokens_details": {"cached_tokens": 1000},
        "output_tokens_details": {"reasoning_tokens": 100},
    }
    upstream.script = ResponsesScript(usage=usage)
    pricing = "{input: 0.15, output: 0.6, cached_input: 0.075}"
    gw = await start_gateway(responses_config(upstream.base_url, pricing=pricing))
    key, secret = await gw.new_key_record(balance=1_000_000)
    client = sdk(gw, secret)
    if stream:
        response_stream = await client.responses.create(model="up", input="x", stream=True)
        events = [e async for e in response_stream]
        final = events[-1]
        assert final.type == "response.completed"
        seen = final.response.usage
    else:
        seen = (await client.responses.create(model="up", input="x")).usage
    assert seen is not None
    assert (seen.input_tokens, seen.output_tokens) == (1234, 567)
    assert seen.input_tokens_details.cached_tokens == 1000
    assert seen.output_tokens_details.reasoning_tokens == 100

    (entry,) = await usage_entries(gw, key.id)
    exact = (1234 - 1000) * Decimal("0.15") + 1000 * Decimal("0.075") + 567 * Decimal("0.6")
    assert entry.amount == -math.ceil(exact) == -451
    assert entry.usage is not None and not entry.usage.estimated
    assert (entry.usage.input_tokens, entry.usage.output_tokens) == (1234, 567)
    assert (entry.usage.cached_input_tokens, entry.usage.reasoning_tokens) == (1000, 100)
    assert await gw.store.balance(key.id) == 1_000_000 - 451


@pytest.mark.parametrize("librechat", [False, True], ids=["spec", "librechat"])
async def test_error_mid_stream(
    start_gateway: StartGateway,
    sdk: MakeClient,
    upstream: FakeResponsesUpstream,
    upstream_env: str,
    librechat: bool,
) -> None:
    """``error`` + ``response.failed``, or LibreChat's bare ``[DONE]`` (its
    api/server/controllers/agents/responses.js writes nothing else after the headers)."""
    message = "no response.completed" if librechat else "fake upstream exploded"
    upstream.script = ResponsesScript(
        content=("one ", "two ", "three "), error_after=2, librechat=librechat
    )
    gw = await start_gateway(responses_config(upstream.base_url))
    key, secret = await gw.new_key_record()
    client = sdk(gw, secret)
    stream = await client.chat.completions.create(model="up", messages=HELLO, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "one two "
    assert message in caught.value.message

    with pytest.raises(openai.InternalServerError) as status:
        await client.responses.create(model="up", input="x")
    assert status.value.status_code == 502

    responses_stream = await client.responses.create(model="up", input="x", stream=True)
    with pytest.raises(openai.APIError):
        _ = [e async for e in responses_stream]
    # What streamed before the failure is billed (estimated: no usage came).
    entries = await usage_entries(gw, key.id, count=2)
    assert all(e.usage is not None and e.usage.estimated for e in entries)


async def test_error_before_any_content_is_an_http_error(
    start_gateway: StartGateway,
    sdk: MakeClient,
    upstream: FakeResponsesUpstream,
    upstream_env: str,
) -> None:
    upstream.script = ResponsesScript(
        error_after=0, error_type="invalid_request_error", error_message="context too long"
    )
    gw = await start_gateway(responses_config(upstream.base_url))
    client = sdk(gw, await gw.new_key())
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="up", messages=HELLO, stream=True)
    assert "context too long" in caught.value.message


@pytest.mark.parametrize("send_done", [True, False])
async def test_stream_without_terminal_event_fails(
    start_gateway: StartGateway,
    sdk: MakeClient,
    upstream: FakeResponsesUpstream,
    upstream_env: str,
    send_done: bool,
) -> None:
    upstream.script = ResponsesScript(send_terminal=False, send_done=send_done)
    gw = await start_gateway(responses_config(upstream.base_url))
    client = sdk(gw, await gw.new_key())
    stream = await client.chat.completions.create(model="up", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError) as caught:
        _ = [c async for c in stream]
    assert "no response.completed" in caught.value.message


async def test_incomplete_answer(
    start_gateway: StartGateway,
    sdk: MakeClient,
    clients: Clients,
    upstream: FakeResponsesUpstream,
    upstream_env: str,
) -> None:
    upstream.script = ResponsesScript(incomplete="max_output_tokens")
    gw = await start_gateway(responses_config(upstream.base_url))
    key = await gw.new_key()
    reply = await sdk(gw, key).chat.completions.create(model="up", messages=HELLO)
    assert reply.choices[0].finish_reason == "length"
    response = await clients(gw, key).responses.create(model="up", input="x")
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


async def test_vendor_events_are_ignored(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    upstream: FakeResponsesUpstream,
    upstream_env: str,
) -> None:
    upstream.script = ResponsesScript(attachments=True, content=("fine",))
    gw = await start_gateway(responses_config(upstream.base_url))
    stream = await create_stream(http, gw, await gw.new_key(), {"model": "up", "input": "x"})
    types = [e["type"] for e in stream.events]
    assert not [t for t in types if ":" in t]  # nothing vendor-specific reaches the client
    assert stream.events[-1]["response"]["output"][0]["content"][0]["text"] == "fine"


async def test_client_going_away_releases_the_upstream(
    start_gateway: StartGateway,
    sdk: MakeClient,
    upstream: FakeResponsesUpstream,
    upstream_env: str,
) -> None:
    upstream.script = ResponsesScript(content=tuple(f"w{i} " for i in range(200)), chunk_delay=0.02)
    gw = await start_gateway(responses_config(upstream.base_url))
    key, secret = await gw.new_key_record()
    stream = await sdk(gw, secret).chat.completions.create(model="up", messages=HELLO, stream=True)
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    await stream.close()
    for _ in range(100):
        if upstream.disconnects:
            break
        await asyncio.sleep(0.02)
    assert upstream.disconnects, "the upstream never saw the client go away"
    (entry,) = await usage_entries(gw, key.id)
    assert entry.usage is not None and entry.usage.output_tokens > 0  # aborted, still billed
