"""The Anthropic Messages front door, driven by the official ``anthropic`` SDK.

Against the ``echo`` backend, the ``openai_chat`` backend (fake OpenAI
upstream) and the ``anthropic`` backend (fake Anthropic upstream); every
refusal in Anthropic's error shape; metering as for the other dialects.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import anthropic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from pydantic import TypeAdapter

from gateway.metering import cost
from gateway.route import Pricing
from gateway.store.records import KeyLimits
from tests.conftest import ECHO_CONFIG, RunningGateway, StartGateway, free_port
from tests.fakes.anthropic_upstream import FakeAnthropicUpstream, text, thinking, tool_use
from tests.fakes.anthropic_upstream import Script as AnthropicScript
from tests.fakes.openai_upstream import FakeOpenAIUpstream, ToolCallScript
from tests.fakes.openai_upstream import Script as OpenAIScript
from tests.integration.support import upstream_config, usage_entries
from tests.integration.test_anthropic_backend import anthropic_config

HELLO: Any = [{"role": "user", "content": "hello there"}]
WEATHER: Any = {
    "name": "get_weather",
    "description": "Current weather of a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)

MakeAnthropic = Callable[..., anthropic.AsyncAnthropic]


@pytest.fixture
async def claude() -> AsyncIterator[MakeAnthropic]:
    """``claude(gw, key, prefix="")``: an ``AsyncAnthropic`` client of a gateway, closed after.

    ``bearer=True`` sends the key as ``Authorization: Bearer`` instead of ``x-api-key``.
    """
    clients: list[anthropic.AsyncAnthropic] = []

    def make(
        gw: RunningGateway, key: str, prefix: str = "", *, bearer: bool = False
    ) -> anthropic.AsyncAnthropic:
        if bearer:
            client = anthropic.AsyncAnthropic(
                base_url=f"{gw.url}{prefix}", auth_token=key, max_retries=0, timeout=10.0
            )
        else:
            client = anthropic.AsyncAnthropic(
                base_url=f"{gw.url}{prefix}", api_key=key, max_retries=0, timeout=10.0
            )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def error_of(exc: anthropic.APIStatusError, type_: str) -> dict[str, Any]:
    """The error body of an SDK exception, checked against Anthropic's shape."""
    body = exc.body
    assert isinstance(body, dict), body
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}, body
    assert body["error"]["type"] == type_, body
    assert body["error"]["message"] and "Traceback" not in body["error"]["message"]
    if type_ != "request_too_large":  # documented by Anthropic, absent from the SDK's types
        ErrorResponse.model_validate(body)
    return dict(body["error"])


# The echo backend


@pytest.mark.parametrize("prefix", ["", "/api/agents"])
async def test_create_not_streamed(
    start_gateway: StartGateway, claude: MakeAnthropic, prefix: str
) -> None:
    gw = await start_gateway()
    client = claude(gw, await gw.new_key(), prefix)
    raw = await client.messages.with_raw_response.create(
        model="echo",
        max_tokens=100,
        messages=HELLO,
        extra_headers={"anthropic-version": "2099-01-01"},
    )
    message = await raw.parse()
    assert isinstance(message, Message)
    assert message.id.startswith("msg_")
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "echo"
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [
        ("text", "hello there")
    ]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.output_tokens == 2
    assert message.usage.input_tokens > 0
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0
    assert raw.headers["x-gateway-cost"]
    assert raw.headers["X-Request-Id"]


async def test_create_streamed_events_in_anthropic_order(
    start_gateway: StartGateway, claude: MakeAnthropic
) -> None:
    gw = await start_gateway()
    client = claude(gw, await gw.new_key())
    stream = await client.messages.create(model="echo", max_tokens=100, messages=HELLO, stream=True)
    events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0]
    assert start.type == "message_start" and start.message.content == []
    assert start.message.usage.input_tokens > 0
    text_deltas = [
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    ]
    assert "".join(text_deltas) == "hello there"
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == 2


async def test_raw_stream_has_ping_after_message_start(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway()
    headers = {"x-api-key": await gw.new_key(), "anthropic-version": "2023-06-01"}
    body = {"model": "echo", "max_tokens": 50, "messages": HELLO, "stream": True}
    async with http.post(f"{gw.url}/v1/messages", json=body, headers=headers) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        raw = (await resp.read()).decode()
    frames = [f for f in raw.split("\n\n") if f]
    names = [f.split("\n")[0].removeprefix("event: ") for f in frames]
    assert names[:2] == ["message_start", "ping"]
    assert names[-1] == "message_stop"
    for frame in frames:
        name, data = frame.split("\n")
        if name != "event: ping":
            STREAM_EVENT.validate_json(data.removeprefix("data: "))


async def test_messages_stream_accumulates(
    start_gateway: StartGateway, claude: MakeAnthropic
) -> None:
    gw = await start_gateway()
    client = claude(gw, await gw.new_key())
    async with client.messages.stream(
        model="echo", max_tokens=100, messages=[{"role": "user", "content": "one two three"}]
    ) as stream:
        texts = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == "one two three"
    assert final.content[0].type == "text" and final.content[0].text == "one two three"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3


async def test_max_tokens_reached(start_gateway: StartGateway, claude: MakeAnthropic) -> None:
    gw = await start_gateway()
    client = claude(gw, await gw.new_key())
    words = [{"role": "user", "content": "a b c d e f"}]
    message = await client.messages.create(model="echo", max_tokens=2, messages=words)
    assert message.stop_reason == "max_tokens"
    assert message.content[0].type == "text" and message.content[0].text == "a b "


async def test_tools_and_a_tool_result_round_trip(
    start_gateway: StartGateway, claude: MakeAnthropic
) -> None:
    gw = await start_gateway()
    client = claude(gw, await gw.new_key())
    question: Any = {"role": "user", "content": "weather in Paris?"}
    async with client.messages.stream(
        model="echo", max_tokens=100, messages=[question], tools=[WEATHER]
    ) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    (call,) = final.content
    assert call.type == "tool_use" and call.name == "get_weather"
    assert isinstance(call.input, dict) and isinstance(call.input["city"], str)

    not_streamed = await client.messages.create(
        model="echo",
        max_tokens=100,
        messages=[question],
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    assert not_streamed.content[0].type == "tool_use"

    answer = await client.messages.create(
        model="echo",
        max_tokens=100,
        messages=[
            question,
            {"role": "assistant", "content": final.content},  # type: ignore[typeddict-item]
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "18C and sunny"}
                ],
            },
        ],
        tools=[WEATHER],
    )
    assert answer.stop_reason == "end_turn"
    assert answer.content[0].type == "text"
    assert answer.content[0].text == "The tool returned: 18C and sunny"


async def test_x_api_key_and_bearer_both_work(
    start_gateway: StartGateway, claude: MakeAnthropic, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway()
    key = await gw.new_key()
    for bearer in (False, True):
        message = await claude(gw, key, bearer=bearer).messages.create(
            model="echo", max_tokens=50, messages=HELLO
        )
        assert message.content[0].type == "text" and message.content[0].text == "hello there"
    body = {"model": "echo", "max_tokens": 50, "messages": HELLO}
    for headers in ({"x-api-key": key}, {"Authorization": f"Bearer {key}"}):
        async with http.post(f"{gw.url}/v1/messages", json=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()


async def test_count_tokens(start_gateway: StartGateway, claude: MakeAnthropic) -> None:
    gw = await start_gateway()
    client = claude(gw, await gw.new_key())
    messages: Any = [{"role": "user", "content": "count these words please"}]
    counted = await client.messages.count_tokens(model="echo", messages=messages, system="Be nice.")
    created = await client.messages.create(
        model="echo", max_tokens=50, messages=messages, system="Be nice."
    )
    # The echo backend reports the gateway's own estimate: the two agree.
    assert counted.input_tokens == created.usage.input_tokens > 0
    plain = await client.messages.count_tokens(model="echo", messages=messages)
    with_tools = await client.messages.count_tokens(
        model="echo", messages=messages, tools=[WEATHER]
    )
    assert plain.input_tokens < counted.input_tokens  # the system prompt counts
    assert with_tools.input_tokens > plain.input_tokens  # and so do tools
    with pytest.raises(anthropic.NotFoundError) as caught:
        await client.messages.count_tokens(model="nope", messages=messages)
    error_of(caught.value, "not_found_error")
    with pytest.raises(anthropic.AuthenticationError):
        await claude(gw, "sk-gw-" + "x" * 43).messages.count_tokens(model="echo", messages=messages)


# Billing


async def test_billing_matches_the_reported_usage(
    start_gateway: StartGateway, claude: MakeAnthropic
) -> None:
    gw = await start_gateway()
    key, secret = await gw.new_key_record(balance=100_000)
    client = claude(gw, secret)
    raw = await client.messages.with_raw_response.create(
        model="echo", max_tokens=100, messages=HELLO
    )
    message = await raw.parse()
    (entry,) = await usage_entries(gw, key.id)
    assert entry.usage is not None and entry.agent == "echo"
    assert entry.usage.input_tokens == message.usage.input_tokens
    assert entry.usage.output_tokens == message.usage.output_tokens
    charged = cost(entry.usage, Pricing(input=1, output=2))
    assert entry.amount == -charged
    assert raw.headers["x-gateway-cost"] == str(charged)
    assert raw.headers["x-gateway-balance"] == str(100_000 - charged)

    async with client.messages.stream(model="echo", max_tokens=100, messages=HELLO) as stream:
        final = await stream.get_final_message()
    entries = await usage_entries(gw, key.id, count=2)
    streamed = next(e for e in entries if e.id != entry.id)
    assert streamed.usage is not None
    assert streamed.usage.input_tokens == final.usage.input_tokens
    assert streamed.usage.output_tokens == final.usage.output_tokens
    assert await gw.store.balance(key.id) == 100_000 + entry.amount + streamed.amount


async def test_rate_limit_headers_and_429(
    start_gateway: StartGateway, claude: MakeAnthropic
) -> None:
    gw = await start_gateway()
    _, secret = await gw.store.create_key("limited", balance=100_000, limits=KeyLimits(rpm=2))
    client = claude(gw, secret)
    raw = await client.messages.with_raw_response.create(
        model="echo", max_tokens=50, messages=HELLO
    )
    assert raw.headers["x-ratelimit-limit-requests"] == "2"
    assert raw.headers["x-ratelimit-remaining-requests"] == "1"
    async with client.messages.with_streaming_response.create(
        model="echo", max_tokens=50, messages=HELLO, stream=True
    ) as streamed:
        assert streamed.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(model="echo", max_tokens=50, messages=HELLO)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["Retry-After"]
    error_of(caught.value, "rate_limit_error")


# Errors, each in Anthropic's shape


async def test_authentication_errors(
    start_gateway: StartGateway, claude: MakeAnthropic, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway()
    with pytest.raises(anthropic.AuthenticationError) as caught:
        await claude(gw, "sk-gw-" + "x" * 43).messages.create(
            model="echo", max_tokens=50, messages=HELLO
        )
    assert caught.value.status_code == 401
    error_of(caught.value, "authentication_error")
    body = {"model": "echo", "max_tokens": 50, "messages": HELLO}
    for headers in ({}, {"x-api-key": ""}, {"Authorization": "Basic abc"}):
        async with http.post(f"{gw.url}/v1/messages", json=body, headers=headers) as resp:
            assert resp.status == 401
            payload = await resp.json()
            assert payload["error"]["type"] == "authentication_error", payload
            assert payload["request_id"] == resp.headers["X-Request-Id"]
            ErrorResponse.model_validate(payload)


async def test_permission_and_not_found(start_gateway: StartGateway, claude: MakeAnthropic) -> None:
    gw = await start_gateway()
    client = claude(gw, await gw.new_key(agents=("free",)))
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        await client.messages.create(model="echo", max_tokens=50, messages=HELLO)
    error_of(denied.value, "permission_error")
    for stream in (False, True):
        with pytest.raises(anthropic.NotFoundError) as missing:
            await client.messages.create(
                model="no-such-agent", max_tokens=50, messages=HELLO, stream=stream
            )
        error_of(missing.value, "not_found_error")


async def test_invalid_requests(start_gateway: StartGateway, claude: MakeAnthropic) -> None:
    gw = await start_gateway()
    client = claude(gw, await gw.new_key())
    cases: list[tuple[dict[str, Any], str]] = [
        ({"max_tokens": None}, "max_tokens"),
        ({"temperature": 1.5}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages[0].content"),
        ({"tool_choice": {"type": "x"}}, "tool_choice.type"),
        ({"thinking": {"type": "enabled", "budget_tokens": 100}}, "thinking.budget_tokens"),
    ]
    for extra, param in cases:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await client.messages.create(
                model="echo", max_tokens=10, messages=HELLO, extra_body=extra
            )
        error = error_of(caught.value, "invalid_request_error")
        assert param in error["message"], (param, error)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"[1, 2]", b'{"model": "echo", "max_tokens": 1e400, "messages": []}'],
)
async def test_malformed_bodies(
    start_gateway: StartGateway, http: aiohttp.ClientSession, body: bytes
) -> None:
    gw = await start_gateway()
    headers = {"x-api-key": await gw.new_key(), "Content-Type": "application/json"}
    async with http.post(f"{gw.url}/v1/messages", data=body, headers=headers) as resp:
        assert resp.status == 400
        payload = await resp.json()
        assert payload["error"]["type"] == "invalid_request_error"
        ErrorResponse.model_validate(payload)


async def test_unknown_path_under_messages_is_anthropic_shaped(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway()
    for path in ("/v1/messages/batches", "/api/agents/v1/messages/nope"):
        async with http.post(f"{gw.url}{path}", json={}) as resp:
            assert resp.status == 404
            payload = await resp.json()
            assert payload["error"]["type"] == "not_found_error"
            ErrorResponse.model_validate(payload)
    async with http.get(f"{gw.url}/v1/messages") as resp:
        assert resp.status == 405
        assert (await resp.json())["type"] == "error"
    # The OpenAI dialects keep OpenAI's shape.
    async with http.post(f"{gw.url}/v1/chat/completions", json={}) as resp:
        assert resp.status == 401
        assert set((await resp.json())["error"]) == {"message", "type", "param", "code"}
    async with http.get(f"{gw.url}/v1/nothing-here") as resp:
        assert set(await resp.json()) == {"error"}


LIMITED_CONFIG = """
limits: {max_body_bytes: 2048}
backends:
  echo: {type: echo}
routes:
  echo: {backend: echo, pricing: {input: 1, output: 2}}
"""


async def test_body_over_the_limit_is_413(
    start_gateway: StartGateway, claude: MakeAnthropic
) -> None:
    gw = await start_gateway(LIMITED_CONFIG)
    client = claude(gw, await gw.new_key())
    with pytest.raises(anthropic.APIStatusError) as caught:
        await client.messages.create(
            model="echo", max_tokens=10, messages=[{"role": "user", "content": "a " * 2000}]
        )
    assert caught.value.status_code == 413
    error_of(caught.value, "request_too_large")


async def test_zero_balance_is_402_billing_error(
    start_gateway: StartGateway, claude: MakeAnthropic
) -> None:
    gw = await start_gateway()
    client = claude(gw, await gw.new_key(balance=0))
    for stream in (False, True):
        with pytest.raises(anthropic.APIStatusError) as caught:
            await client.messages.create(model="echo", max_tokens=50, messages=HELLO, stream=stream)
        assert caught.value.status_code == 402
        error_of(caught.value, "billing_error")
    free = await client.messages.create(model="free", max_tokens=50, messages=HELLO)
    assert free.content[0].type == "text"


async def test_unexpected_failure_is_500_api_error(
    start_gateway: StartGateway, claude: MakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = await start_gateway()
    client = claude(gw, await gw.new_key())

    def broken(*args: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(gw.gateway, "route", broken)
    with pytest.raises(anthropic.InternalServerError) as caught:
        await client.messages.create(model="echo", max_tokens=50, messages=HELLO)
    assert caught.value.status_code == 500
    error = error_of(caught.value, "api_error")
    assert "secret" not in error["message"]


async def test_unreachable_store_is_529_overloaded(
    start_gateway: StartGateway, claude: MakeAnthropic
) -> None:
    gw = await start_gateway(redis=f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(anthropic.APIStatusError) as caught:
        await claude(gw, "sk-gw-" + "y" * 43).messages.create(
            model="echo", max_tokens=50, messages=HELLO
        )
    assert caught.value.status_code == 529
    error_of(caught.value, "overloaded_error")
    assert time.monotonic() - started < 5.0


# The openai_chat backend behind the front door


@pytest.fixture
async def openai_gw(
    start_gateway: StartGateway, fake_upstream: FakeOpenAIUpstream, upstream_env: str
) -> RunningGateway:
    return await start_gateway(upstream_config(fake_upstream.base_url))


async def test_openai_chat_backend(
    openai_gw: RunningGateway, claude: MakeAnthropic, fake_upstream: FakeOpenAIUpstream
) -> None:
    client = claude(openai_gw, await openai_gw.new_key())
    message = await client.messages.create(
        model="up",
        max_tokens=64,
        system="Be brief.",
        messages=HELLO,
        extra_body={"temperature": 0.2},
        stop_sequences=["END"],
        metadata={"user_id": "u-1"},
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello from upstream"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 3)
    body = fake_upstream.last.body
    assert body["model"] == "upstream-model-x"
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["temperature"] == 0.2
    assert body["stop"] == ["END"]

    async with client.messages.stream(model="up", max_tokens=64, messages=HELLO) as stream:
        texts = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == "Hello from upstream"
    assert final.usage.output_tokens == 3


async def test_openai_chat_backend_tool_round_trip(
    openai_gw: RunningGateway, claude: MakeAnthropic, fake_upstream: FakeOpenAIUpstream
) -> None:
    fake_upstream.enqueue(
        OpenAIScript(
            content=(),
            tool_calls=(ToolCallScript("get_weather", ('{"city"', ': "Paris"}'), "call_up_1"),),
        )
    )
    client = claude(openai_gw, await openai_gw.new_key())
    question: Any = {"role": "user", "content": "weather?"}
    async with client.messages.stream(
        model="up", max_tokens=64, messages=[question], tools=[WEATHER]
    ) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    (call,) = final.content
    assert call.type == "tool_use" and call.id == "call_up_1"
    assert call.input == {"city": "Paris"}
    assert fake_upstream.last.body["tools"][0]["function"]["name"] == "get_weather"

    await client.messages.create(
        model="up",
        max_tokens=64,
        messages=[
            question,
            {"role": "assistant", "content": final.content},  # type: ignore[typeddict-item]
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}],
            },
        ],
        tools=[WEATHER],
    )
    sent = fake_upstream.last.body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == "call_up_1"
    assert sent[2] == {"role": "tool", "tool_call_id": "call_up_1", "content": "sunny"}


async def test_openai_chat_upstream_failures(
    start_gateway: StartGateway,
    claude: MakeAnthropic,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    fake_upstream.script = OpenAIScript(status=500)
    gw = await start_gateway(upstream_config(fake_upstream.base_url, timeout=0.5))
    client = claude(gw, await gw.new_key())
    for stream in (False, True):
        with pytest.raises(anthropic.InternalServerError) as caught:
            await client.messages.create(model="up", max_tokens=10, messages=HELLO, stream=stream)
        assert caught.value.status_code == 502
        error_of(caught.value, "api_error")
    fake_upstream.script = OpenAIScript(hang=True)
    with pytest.raises(anthropic.APIStatusError) as timed_out:
        await client.messages.create(model="up", max_tokens=10, messages=HELLO)
    assert timed_out.value.status_code == 504
    error_of(timed_out.value, "timeout_error")


async def test_failure_mid_stream_is_an_error_event(
    start_gateway: StartGateway,
    claude: MakeAnthropic,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    fake_upstream.script = OpenAIScript(content=("a", "b", "c"), error_after=1)
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    client = claude(gw, await gw.new_key())
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with client.messages.stream(model="up", max_tokens=10, messages=HELLO) as stream:
            async for event in stream:
                seen.append(event.type)
    assert "message_start" in seen and "message_stop" not in seen
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "api_error"


# The anthropic backend behind the front door


@pytest.fixture
async def fake_anthropic() -> AsyncIterator[FakeAnthropicUpstream]:
    upstream = await FakeAnthropicUpstream().start()
    yield upstream
    await upstream.close()


@pytest.fixture
async def anthropic_gw(
    start_gateway: StartGateway, fake_anthropic: FakeAnthropicUpstream, upstream_env: str
) -> RunningGateway:
    return await start_gateway(anthropic_config(fake_anthropic.url))


async def test_anthropic_backend_text_and_usage(
    anthropic_gw: RunningGateway, claude: MakeAnthropic, fake_anthropic: FakeAnthropicUpstream
) -> None:
    usage = {
        "input_tokens": 25,
        "cache_creation_input_tokens": 7,
        "cache_read_input_tokens": 100,
        "output_tokens": 1,
    }
    fake_anthropic.script = AnthropicScript(usage=usage, output_tokens=15)
    key, secret = await anthropic_gw.new_key_record()
    client = claude(anthropic_gw, secret)
    message = await client.messages.create(
        model="claude",
        max_tokens=300,
        system=[{"type": "text", "text": "Be brief."}],
        messages=HELLO,
        extra_body={"top_k": 5, "top_p": 0.5},
        stop_sequences=["END"],
    )
    assert message.content[0].type == "text" and message.content[0].text == "Hello from Claude"
    # Anthropic's counts come back exactly as the upstream reported them.
    assert message.usage.input_tokens == 25
    assert message.usage.cache_creation_input_tokens == 7
    assert message.usage.cache_read_input_tokens == 100
    assert message.usage.output_tokens == 15
    sent = fake_anthropic.last.body
    assert sent["system"] == "Be brief."
    assert sent["max_tokens"] == 300
    assert sent["stop_sequences"] == ["END"]
    assert sent["top_p"] == 0.5 and "top_k" not in sent  # top_k: accepted, not forwarded
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hello there"}]}
    ]
    (entry,) = await usage_entries(anthropic_gw, key.id)
    assert entry.usage is not None
    assert (entry.usage.input_tokens, entry.usage.cached_input_tokens) == (132, 100)
    assert entry.usage.cache_write_tokens == 7

    async with client.messages.stream(model="claude", max_tokens=300, messages=HELLO) as stream:
        final = await stream.get_final_message()
    assert final.usage.input_tokens == 25
    assert final.usage.cache_read_input_tokens == 100
    assert final.usage.output_tokens == 15


async def test_anthropic_backend_thinking_and_tools(
    anthropic_gw: RunningGateway, claude: MakeAnthropic, fake_anthropic: FakeAnthropicUpstream
) -> None:
    fake_anthropic.enqueue(
        AnthropicScript(
            blocks=(
                thinking("The user wants ", "weather."),
                text("Let me check."),
                tool_use("get_weather", '{"city": ', '"Paris"}', call_id="toolu_up_1"),
            )
        )
    )
    client = claude(anthropic_gw, await anthropic_gw.new_key())
    question: Any = {"role": "user", "content": "weather in Paris?"}
    async with client.messages.stream(
        model="claude",
        max_tokens=8000,
        messages=[question],
        tools=[WEATHER],
        thinking={"type": "enabled", "budget_tokens": 5000},
    ) as stream:
        kinds = [e.type async for e in stream]
        final = await stream.get_final_message()
    assert "content_block_delta" in kinds
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].type == "thinking"
    assert final.content[0].thinking == "The user wants weather."
    call = final.content[2]
    assert call.type == "tool_use" and call.id == "toolu_up_1" and call.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"
    sent = fake_anthropic.last.body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 4096}  # the "medium" bucket
    assert sent["tools"][0]["name"] == "get_weather"

    answer = await client.messages.create(
        model="claude",
        max_tokens=8000,
        messages=[
            question,
            {"role": "assistant", "content": final.content},  # type: ignore[typeddict-item]
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "18C"},
                    {"type": "text", "text": "and tomorrow?"},
                ],
            },
        ],
        tools=[WEATHER],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    assert answer.stop_reason == "end_turn"
    sent = fake_anthropic.last.body
    assert sent["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Let me check."},
            {
                "type": "tool_use",
                "id": "toolu_up_1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ],
    }
    assert sent["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_up_1", "content": "18C"},
        {"type": "text", "text": "and tomorrow?"},
    ]
    assert sent["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


async def test_anthropic_backend_errors(
    anthropic_gw: RunningGateway, claude: MakeAnthropic, fake_anthropic: FakeAnthropicUpstream
) -> None:
    client = claude(anthropic_gw, await anthropic_gw.new_key())
    fake_anthropic.enqueue(AnthropicScript(status=529))
    with pytest.raises(anthropic.InternalServerError) as caught:
        await client.messages.create(model="claude", max_tokens=50, messages=HELLO)
    assert caught.value.status_code == 502  # the upstream failed: a bad gateway
    error_of(caught.value, "api_error")

    fake_anthropic.enqueue(AnthropicScript(blocks=(text("a", "b", "c"),), error_after=1))
    with pytest.raises(anthropic.APIStatusError) as mid:
        async with client.messages.stream(model="claude", max_tokens=50, messages=HELLO) as s:
            async for _ in s:
                pass
    body = mid.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "api_error"
    assert "overloaded" in body["error"]["message"]


async def test_echo_config_is_unchanged_for_openai_clients(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(ECHO_CONFIG)
    headers = {"Authorization": f"Bearer {await gw.new_key()}"}
    body = {"model": "echo", "messages": HELLO}
    async with http.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers) as resp:
        assert (await resp.json())["choices"][0]["message"]["content"] == "hello there"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_stop_sequence_from_the_upstream_is_reported(
    anthropic_gw: RunningGateway,
    claude: MakeAnthropic,
    fake_anthropic: FakeAnthropicUpstream,
    stream: bool,
) -> None:
    fake_anthropic.script = AnthropicScript(stop_reason="stop_sequence", stop_sequence="END")
    client = claude(anthropic_gw, await anthropic_gw.new_key())
    kwargs: dict[str, Any] = {
        "model": "claude",
        "max_tokens": 100,
        "messages": HELLO,
        "stop_sequences": ["END"],
    }
    if stream:
        async with client.messages.stream(**kwargs) as events:
            message = await events.get_final_message()
    else:
        message = await client.messages.create(**kwargs)
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")
