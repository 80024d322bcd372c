"""The ``librechat`` backend: its request normalisation, options, and its stream
against the fake LibreChat (``tests/fakes/librechat_upstream.py``) without a gateway.

What every backend does is the backend contract's (``tests/contract``: there, LibreChat's
error text after the headers is its failure mid-stream, and a status it forwards before
them its error status); here, what only LibreChat does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from gateway_plugins.backends.librechat import LibreChatBackend, LibreChatOptions
from gateway_plugins.backends.openai_wire import ChunkParser

from gateway.config import parse_config
from gateway.errors import ConfigError, InvalidRequest, RateLimited, UpstreamError
from gateway.events import (
    Completed,
    Event,
    ReasoningDelta,
    TextDelta,
    Usage,
)
from gateway.invocation import (
    AgentInvocation,
    ForcedFunction,
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    Message,
    ResponseFormat,
    Sampling,
    TextPart,
)
from gateway.plugin import CallContext
from gateway.route import Route
from tests.conftest import invocation
from tests.fakes.librechat_upstream import (
    AGENT_ID,
    LIBRECHAT_KEY,
    SYSTEM_NOT_FIRST,
    Agent,
    ChatScript,
    FakeLibreChat,
    LibreChatTool,
)
from tests.gateway.factories import collect

ENV = "LIBRECHAT_TEST_KEY"


def ctx(inv: AgentInvocation) -> CallContext:
    return CallContext(
        request_id="req_lc_1",
        key_id="key_1",
        agent=inv.agent,
        backend="librechat",
        model=AGENT_ID,
        route=Route(backend="librechat", model=AGENT_ID),
        charge_id="c1",
    )


def backend(
    base_url: str = "http://127.0.0.1:9/api/agents/v1", *, fold_system: bool = True
) -> LibreChatBackend:
    options = LibreChatOptions(base_url=base_url, api_key_env=ENV, fold_system=fold_system)
    return LibreChatBackend("librechat", options)


# The request


def test_body_keeps_only_what_librechat_uses_and_folds_system_text() -> None:
    """LibreChat reads model, messages and stream (api/server/controllers/agents/openai.js);
    instructions, system and developer text opens the first user message."""
    schema = {"type": "object", "properties": {}}
    inv = invocation(
        input=(
            Message("developer", (TextPart("be terse"),)),
            Message("user", (TextPart("weather?"),)),
            FunctionCall("call_1", "get_weather", "{}"),
            FunctionCallOutput("call_1", "sunny"),
            Message("system", (TextPart("in Celsius"),)),
        ),
        instructions="You are helpful.",
        tools=(FunctionTool("get_weather", None, schema),),
        tool_choice=ForcedFunction("get_weather"),
        parallel_tool_calls=True,
        sampling=Sampling(temperature=0.1, top_p=0.5, seed=3, stop=("X",)),
        max_output_tokens=100,
        response_format=ResponseFormat("json_object"),
        reasoning_effort="high",
    )
    body = backend().body(inv, ctx(inv))
    assert body == {
        "model": AGENT_ID,
        "messages": [
            {"role": "user", "content": "You are helpful.\n\nbe terse\n\nin Celsius\n\nweather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        "stream": True,
    }


def test_system_text_without_a_user_message_is_one() -> None:
    inv = invocation(input=(Message("developer", (TextPart("say hi"),)),))
    assert backend().body(inv, ctx(inv))["messages"] == [{"role": "user", "content": "say hi"}]


def test_fold_system_off_sends_system_messages() -> None:
    inv = invocation(
        input=(Message("developer", (TextPart("be terse"),)), Message("user", (TextPart("hi"),)))
    )
    assert backend(fold_system=False).body(inv, ctx(inv))["messages"] == [
        {"role": "system", "content": "be terse"},
        {"role": "user", "content": "hi"},
    ]


def test_headers_carry_the_service_key_and_request_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, LIBRECHAT_KEY)
    inv = invocation()
    assert backend().headers(ctx(inv)) == {
        "X-Request-Id": "req_lc_1",
        "Authorization": f"Bearer {LIBRECHAT_KEY}",
    }


def test_api_key_env_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    text = """
backends:
  lc: {type: librechat, base_url: "http://librechat:3080/api/agents/v1"}
routes:
  a: {backend: lc, model: agent_abc}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "g.yaml")
    assert any(p.path == "backends.lc.api_key_env" for p in caught.value.problems)

    with pytest.raises(ConfigError, match="LIBRECHAT_TEST_KEY is not set"):
        parse_config(text.replace("type: librechat,", f"type: librechat, api_key_env: {ENV},"))
    monkeypatch.setenv(ENV, "x")
    config = parse_config(text.replace("type: librechat,", f"type: librechat, api_key_env: {ENV},"))
    assert isinstance(config.backends["lc"].options, LibreChatOptions)


def test_chunk_parser_reads_usage_from_the_final_non_empty_chunk() -> None:
    """LibreChat puts usage on the chunk with the finish reason, choices not empty."""
    parser = ChunkParser()
    final = {
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 21, "completion_tokens": 4, "total_tokens": 25},
    }
    assert list(parser.feed({"choices": [{"index": 0, "delta": {"content": "hi"}}]})) == [
        TextDelta("hi")
    ]
    assert list(parser.feed(final)) == []
    assert list(parser.finish(done=True)) == [Usage(21, 4), Completed("stop")]


# The stream, against the fake LibreChat


@pytest.fixture
async def librechat(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeLibreChat]:
    monkeypatch.setenv(ENV, LIBRECHAT_KEY)
    fake = await FakeLibreChat().start()
    yield fake
    await fake.close()


async def run(fake: FakeLibreChat, inv: AgentInvocation | None = None) -> list[Event]:
    inv = inv or invocation()
    lc = backend(fake.base_url)
    try:
        return await collect(lc.invoke(inv, ctx(inv)))
    finally:
        await lc.aclose()


async def test_text_reasoning_and_usage(librechat: FakeLibreChat) -> None:
    librechat.chat = ChatScript(reasoning=("thinking",), content=("Hi", " there"))
    assert await run(librechat) == [
        ReasoningDelta("thinking"),
        TextDelta("Hi"),
        TextDelta(" there"),
        Usage(21, 4),
        Completed("stop"),
    ]
    received = librechat.last
    assert received.path == "/api/agents/v1/chat/completions"
    assert received.headers["Authorization"] == f"Bearer {LIBRECHAT_KEY}"
    assert received.headers["X-Request-Id"] == "req_lc_1"
    assert received.body["model"] == AGENT_ID


async def test_librechat_tool_calls_are_not_the_clients(librechat: FakeLibreChat) -> None:
    tools = (LibreChatTool("web_search", '{"q":"x"}'), LibreChatTool("calc", "{}", "call_2"))
    librechat.chat = ChatScript(tools=tools, content=("Found it.",))
    events = await run(librechat)
    assert events == [TextDelta("Found it."), Usage(21, 4), Completed("stop")]
    # handlers.ts sendFinalChunk: tools and no text finish "tool_calls"; not the client's.
    librechat.chat = ChatScript(tools=tools, content=())
    assert await run(librechat) == [Usage(21, 4), Completed("stop")]


@pytest.mark.parametrize(
    ("error", "kind", "status"),
    [
        ("429 Rate limit reached for requests", RateLimited, 429),
        ("400 prompt is too long", InvalidRequest, 400),
        ("529 Overloaded", UpstreamError, 502),
        ("Connection error.", UpstreamError, 502),
    ],
)
async def test_error_text_keeps_the_providers_status(
    librechat: FakeLibreChat, error: str, kind: type[Exception], status: int
) -> None:
    """The provider SDKs' messages start with the status; a 429 stays a 429 (and, before
    any content, lets the route fall back)."""
    librechat.chat = ChatScript(content=(), error=error)
    with pytest.raises(kind) as caught:
        await run(librechat)
    assert getattr(caught.value, "status", None) == status
    assert error in str(caught.value)


async def test_librechats_named_events_are_not_chunks(librechat: FakeLibreChat) -> None:
    """callbacks.js writes `event: attachment` and `event: on_summarize_*` into the stream."""
    attachment = {"type": "web_search", "toolCallId": "call_lc_1", "usage": {"prompt_tokens": 9}}
    librechat.chat = ChatScript(content=("Hi",), attachments=(attachment,), summarize=True)
    assert await run(librechat) == [TextDelta("Hi"), Usage(21, 4), Completed("stop")]


async def test_system_text_reaches_an_anthropic_agent(librechat: FakeLibreChat) -> None:
    """An Anthropic-backed agent refuses a system message after its own instructions."""
    librechat.agents = (Agent(AGENT_ID, provider="anthropic"),)
    inv = invocation(
        input=(Message("system", (TextPart("be terse"),)), Message("user", (TextPart("hi"),)))
    )
    events = await run(librechat, inv)
    assert events[-1] == Completed("stop")
    with pytest.raises(UpstreamError, match="only permitted as the first"):
        lc = backend(librechat.base_url, fold_system=False)
        try:
            await collect(lc.invoke(inv, ctx(inv)))
        finally:
            await lc.aclose()
    assert SYSTEM_NOT_FIRST.startswith("System messages")


async def test_streaming_disabled_agent_answers_json(librechat: FakeLibreChat) -> None:
    """openai.js: `isStreaming = request.stream === true && !streamingDisabled`."""
    librechat.agents = (Agent(AGENT_ID, disable_streaming=True),)
    librechat.chat = ChatScript(reasoning=("hm",), content=("Hi",))
    assert await run(librechat) == [
        ReasoningDelta("hm"),
        TextDelta("Hi"),
        Usage(21, 4),
        Completed("stop"),
    ]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("forbidden", "403: Forbidden: Insufficient permissions"),
        ("wrong_key", "401: Invalid API key"),
        ("no_key", "401: Missing or invalid Authorization header"),  # "Bearer " is trimmed
        ("user_gone", "401: User not found for this API key"),
        ("before_v0.8.3", "401: Unauthorized"),
        ("unknown_agent", "404: Agent not found"),
        ("not_shared", "403: No remote access to agent"),
    ],
)
async def test_refusals_are_the_gateways_problem(
    librechat: FakeLibreChat, monkeypatch: pytest.MonkeyPatch, setup: str, message: str
) -> None:
    """packages/api/src/apiKeys/middleware.ts and middleware/access.ts, in all their shapes."""
    if setup == "forbidden":
        librechat.forbidden = True
    elif setup == "wrong_key":
        monkeypatch.setenv(ENV, "sk-wrong")
    elif setup == "no_key":
        monkeypatch.setenv(ENV, "")
    elif setup == "user_gone":
        librechat.user_missing = True
    elif setup == "before_v0.8.3":
        librechat.legacy = True
    elif setup == "not_shared":
        librechat.agents = (Agent(AGENT_ID, remote_access=False),)
    else:
        librechat.agents = ("agent_other",)
    with pytest.raises(UpstreamError) as caught:
        await run(librechat)
    assert caught.value.status == 502  # never a 401/403 that looks like the client's key
    assert message in caught.value.message
