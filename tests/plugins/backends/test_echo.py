from __future__ import annotations

import asyncio

import orjson
import pytest
from gateway_plugins.backends.echo import EMPTY_REPLY, PLUGIN, EchoBackend, EchoOptions

from gateway import tokens
from gateway.events import (
    Completed,
    Event,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    Usage,
)
from gateway.invocation import (
    AgentInvocation,
    ForcedFunction,
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    Message,
    TextPart,
)
from gateway.plugin import Backend
from gateway.route import Route
from tests.conftest import invocation
from tests.gateway.factories import close, collect, context
from tests.plugins.backends.schema_check import errors

WEATHER = FunctionTool(
    "weather",
    "Get the weather",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "minLength": 2},
            "unit": {"type": "string", "enum": ["c", "f"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["city", "unit", "days"],
        "additionalProperties": False,
    },
)
CLOCK = FunctionTool("clock", None, {"type": "object", "properties": {"tz": {"type": "string"}}})


async def run(
    inv: AgentInvocation, options: EchoOptions | None = None, route: Route | None = None
) -> list[Event]:
    backend = EchoBackend("echo", options or EchoOptions())
    return await collect(backend.invoke(inv, context(inv, route=route)))


def text_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def usage_of(events: list[Event]) -> Usage:
    (usage,) = [e for e in events if isinstance(e, Usage)]
    return usage


def test_plugin_creates_a_backend() -> None:
    backend = PLUGIN.create("e", EchoOptions())
    assert isinstance(backend, Backend)
    assert PLUGIN.options is EchoOptions


@pytest.mark.parametrize(
    "text",
    [
        "hello there",
        "one",
        "Hello,   w\u00f6rld!\nSecond line\twith tab",
        "  leading and trailing  ",
        "emoji \U0001f600 and CJK \u6f22\u5b57",
    ],
)
async def test_deltas_concatenate_to_the_user_text(text: str) -> None:
    events = await run(invocation(text))
    assert text_of(events) == text
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 0 and all(d.text for d in deltas)
    assert events[-1] == Completed("stop")
    assert isinstance(events[-2], Usage)


async def test_usage_is_one_output_token_per_delta() -> None:
    inv = invocation("a b c d e")
    events = await run(inv)
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 5
    assert usage_of(events) == Usage(
        input_tokens=tokens.estimate_input(inv), output_tokens=5, reasoning_tokens=0
    )


async def test_echoes_the_last_user_message() -> None:
    inv = invocation(
        input=(
            Message("user", (TextPart("first"),)),
            Message("assistant", (TextPart("ok"),)),
            Message("user", (TextPart("sec"), TextPart("ond"))),
            Message("system", (TextPart("not me"),)),
        )
    )
    assert text_of(await run(inv)) == "second"


@pytest.mark.parametrize("text", ["", "   \n"])
async def test_empty_input_gets_the_greeting(text: str) -> None:
    assert text_of(await run(invocation(text))) == EMPTY_REPLY


async def test_max_output_tokens_finishes_with_length() -> None:
    events = await run(invocation("a b c d e f", max_output_tokens=3))
    assert text_of(events) == "a b c "
    assert usage_of(events).output_tokens == 3
    assert events[-1] == Completed("length")


async def test_route_max_output_tokens_applies_too() -> None:
    events = await run(invocation("a b c d"), route=Route(backend="echo", max_output_tokens=2))
    assert text_of(events) == "a b "
    assert events[-1] == Completed("length")


async def test_exactly_at_the_limit_is_a_stop() -> None:
    events = await run(invocation("a b c", max_output_tokens=3))
    assert text_of(events) == "a b c"
    assert events[-1] == Completed("stop")


def tool_call(events: list[Event]) -> tuple[ToolCallStarted, str]:
    started = [e for e in events if isinstance(e, ToolCallStarted)]
    assert len(started) == 1
    pieces = [e for e in events if isinstance(e, ToolCallArgumentsDelta)]
    assert pieces and all(p.call_id == started[0].call_id for p in pieces)
    # the call starts before its arguments
    assert events.index(started[0]) < events.index(pieces[0])
    return started[0], "".join(p.arguments for p in pieces)


async def test_tool_call_arguments_satisfy_the_schema() -> None:
    events = await run(invocation("weather in Paris?", tools=(WEATHER, CLOCK)))
    started, arguments = tool_call(events)
    assert started.name == "weather"
    assert started.call_id.startswith("call_")
    parsed = orjson.loads(arguments)
    assert errors(WEATHER.parameters or {}, parsed) == []
    assert not any(isinstance(e, TextDelta) for e in events)
    assert events[-1] == Completed("tool_calls")
    pieces = sum(isinstance(e, ToolCallArgumentsDelta) for e in events)
    assert usage_of(events).output_tokens == pieces


async def test_tool_call_ids_are_unique_per_request() -> None:
    inv = invocation(tools=(CLOCK,))
    backend = EchoBackend("echo", EchoOptions())
    first = await collect(backend.invoke(inv, context(inv, charge_id="a")))
    second = await collect(backend.invoke(inv, context(inv, charge_id="b")))
    assert tool_call(first)[0].call_id != tool_call(second)[0].call_id


async def test_tool_choice_forces_a_function() -> None:
    events = await run(invocation(tools=(WEATHER, CLOCK), tool_choice=ForcedFunction("clock")))
    started, arguments = tool_call(events)
    assert started.name == "clock"
    assert errors(CLOCK.parameters or {}, orjson.loads(arguments)) == []


async def test_tool_choice_none_answers_with_text() -> None:
    events = await run(invocation("hi", tools=(WEATHER,), tool_choice="none"))
    assert text_of(events) == "hi"
    assert not any(isinstance(e, ToolCallStarted) for e in events)


async def test_tool_without_parameters_gets_an_empty_object() -> None:
    _, arguments = tool_call(await run(invocation(tools=(FunctionTool("ping"),))))
    assert orjson.loads(arguments) == {}


async def test_after_a_tool_result_it_answers_with_text() -> None:
    inv = invocation(
        tools=(WEATHER,),
        input=(
            Message("user", (TextPart("weather?"),)),
            FunctionCall("call_1", "weather", '{"city":"Paris"}'),
            FunctionCallOutput("call_1", "sunny, 21C"),
        ),
    )
    events = await run(inv)
    assert text_of(events) == "The tool returned: sunny, 21C"
    assert not any(isinstance(e, ToolCallStarted) for e in events)
    assert events[-1] == Completed("stop")


async def test_reasoning_comes_first_and_is_counted() -> None:
    events = await run(invocation("hi"), EchoOptions(reasoning=True))
    reasoning = [e for e in events if isinstance(e, ReasoningDelta)]
    assert reasoning and isinstance(events[0], ReasoningDelta)
    first_text = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert all(events.index(r) < first_text for r in reasoning)
    usage = usage_of(events)
    assert usage.reasoning_tokens == len(reasoning)
    assert usage.output_tokens == len(reasoning) + 1


async def test_chunk_delay_paces_the_stream_and_closes_cleanly() -> None:
    inv = invocation("a b c d e f g h")
    backend = EchoBackend("echo", EchoOptions(chunk_delay=0.02))
    loop = asyncio.get_running_loop()
    start = loop.time()
    stream = backend.invoke(inv, context(inv))
    assert await anext(stream) == (TextDelta("a "),)
    assert await anext(stream) == (TextDelta("b "),)
    assert loop.time() - start >= 0.03
    await close(stream)
