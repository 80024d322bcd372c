"""``open_responses_wire``: the upstream request body and the event parser, frame by frame."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import pytest
from gateway_plugins.backends.open_responses_wire import (
    EventParser,
    error_from,
    responses_body,
    usage_from,
)

from gateway import sse
from gateway.errors import GatewayError, InvalidRequest, RateLimited, UpstreamError
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
    ForcedFunction,
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    Message,
    Reasoning,
    ResponseFormat,
    Sampling,
    TextPart,
)
from tests.conftest import invocation
from tests.fakes.open_responses_upstream import FunctionCallScript, ResponsesScript, frames
from tests.integration.responses_support import check_sse

# responses_body


def test_minimal_body() -> None:
    assert responses_body(invocation("hi"), "gpt-4.1-mini") == {
        "model": "gpt-4.1-mini",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
        ],
        "store": False,
        "stream": True,
    }


def test_every_field_is_mapped() -> None:
    schema = {"type": "object", "properties": {"c": {"type": "string"}}}
    inv = invocation(
        "hi",
        instructions="be brief",
        tools=(
            FunctionTool("get_weather", "weather", schema, True),
            FunctionTool("noop"),
        ),
        tool_choice=ForcedFunction("get_weather"),
        parallel_tool_calls=False,
        sampling=Sampling(
            temperature=0.2,
            top_p=0.9,
            presence_penalty=0.1,
            frequency_penalty=0.3,
            seed=7,
            stop=("END",),
        ),
        max_output_tokens=256,
        max_tool_calls=3,
        response_format=ResponseFormat("json_schema", "answer", schema, True, "the answer"),
        reasoning_effort="low",
        reasoning_summary="auto",
        text_verbosity="low",
        include=("reasoning.encrypted_content",),
        metadata={"team": "a"},
        service_tier="flex",
        prompt_cache_key="pck",
        safety_identifier="u1",
        user="someone",
    )
    body = responses_body(inv, "m")
    assert body == {
        "model": "m",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
        ],
        "store": False,
        "stream": True,
        "instructions": "be brief",
        "tools": [
            {
                "type": "function",
                "name": "get_weather",
                "description": "weather",
                "parameters": schema,
                "strict": True,
            },
            {"type": "function", "name": "noop"},
        ],
        "parallel_tool_calls": False,
        "tool_choice": {"type": "function", "name": "get_weather"},
        "temperature": 0.2,
        "top_p": 0.9,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.3,
        "max_output_tokens": 256,
        "max_tool_calls": 3,
        "service_tier": "flex",
        "prompt_cache_key": "pck",
        "safety_identifier": "u1",
        "text": {
            "format": {
                "type": "json_schema",
                "name": "answer",
                "description": "the answer",
                "schema": schema,
                "strict": True,
            },
            "verbosity": "low",
        },
        "reasoning": {"effort": "low", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "metadata": {"team": "a"},
    }
    # Chat-only fields have no Responses counterpart.
    assert not {"seed", "stop", "user"} & set(body)


@pytest.mark.parametrize("choice", ["auto", "none", "required"])
def test_string_tool_choice(choice: Any) -> None:
    assert responses_body(invocation(tool_choice=choice), "m")["tool_choice"] == choice


def test_json_object_format_and_reasoning_effort_only() -> None:
    body = responses_body(
        invocation(response_format=ResponseFormat("json_object"), reasoning_effort="high"), "m"
    )
    assert body["text"] == {"format": {"type": "json_object"}}
    assert body["reasoning"] == {"effort": "high"}
    assert "parallel_tool_calls" not in responses_body(invocation(parallel_tool_calls=True), "m")


def test_conversation_items_are_open_responses_items() -> None:
    inv = invocation(
        input=(
            Message("developer", (TextPart("rules"),)),
            Message("user", (TextPart("weather?"),)),
            Reasoning("thinking", encrypted_content="enc"),
            FunctionCall("call_1", "get_weather", '{"city":"Paris"}'),
            FunctionCallOutput("call_1", "sunny"),
            Message("assistant", (TextPart("It is sunny."),)),
        )
    )
    assert responses_body(inv, "m")["input"] == [
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "rules"}],
        },
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "weather?"}],
        },
        {
            "type": "reasoning",
            "summary": [],
            "content": [{"type": "reasoning_text", "text": "thinking"}],
            "encrypted_content": "enc",
        },
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "It is sunny.", "annotations": []}],
        },
    ]


# usage and errors


def test_usage_from_response_usage() -> None:
    raw = {
        "input_tokens": 100,
        "output_tokens": 40,
        "total_tokens": 140,
        "input_tokens_details": {"cached_tokens": 60},
        "output_tokens_details": {"reasoning_tokens": 10},
    }
    assert usage_from(raw) == Usage(100, 40, cached_input_tokens=60, reasoning_tokens=10)
    assert usage_from({"input_tokens": 3, "input_tokens_details": None}) == Usage(3, 0)


@pytest.mark.parametrize(
    ("payload", "kind", "message"),
    [
        (
            {"error": {"type": "server_error", "code": None, "message": "boom"}},
            UpstreamError,
            "boom",
        ),
        ({"type": "error", "code": "rate_limit_exceeded", "message": "slow"}, RateLimited, "slow"),
        ({"error": {"type": "invalid_request_error", "message": "bad"}}, InvalidRequest, "bad"),
        ({"error": {"type": "too_many_requests", "message": "x"}}, RateLimited, "x"),
        ({}, UpstreamError, "the upstream failed"),
    ],
)
def test_error_from(payload: Mapping[str, Any], kind: type[GatewayError], message: str) -> None:
    error = error_from(payload)
    assert type(error) is kind
    assert message in error.message


# The parser against the fake's real frames


def parse(
    script: ResponsesScript, *, hold: bool = False, client_tools: frozenset[str] | None = None
) -> list[Event]:
    """Decode the fake's bytes with the gateway's SSE decoder and run the parser over them."""
    decoder = sse.SSEDecoder()
    parser = EventParser(hold_tool_calls=hold, client_tools=client_tools)
    out: list[Event] = []
    raw = b"".join(b"".join(writes) for _, writes in frames(script, {"model": "m"}))
    for frame in decoder.feed(raw):
        if frame.data == "[DONE]":
            break
        if ":" in frame.event:
            continue
        data = orjson.loads(frame.data)
        out += parser.feed(data["type"], data)
        if parser.terminal is not None:
            return out
    parser.finish()
    return out


def feed_all(parser: EventParser, events: Iterable[Mapping[str, Any]]) -> list[Event]:
    out: list[Event] = []
    for event in events:
        out += parser.feed(str(event["type"]), event)
    return out


def text(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def test_text_answer() -> None:
    events = parse(ResponsesScript(content=("Hel", "lo")))
    assert events == [
        TextDelta("Hel"),
        TextDelta("lo"),
        Usage(13, 5),
        Completed("stop"),
    ]


@pytest.mark.parametrize("style", ["reasoning", "reasoning_text", "summary"])
def test_reasoning_in_every_spelling(style: Any) -> None:
    events = parse(ResponsesScript(reasoning=("think", "ing"), reasoning_events=style))
    assert [e for e in events if isinstance(e, ReasoningDelta)] == [
        ReasoningDelta("think"),
        ReasoningDelta("ing"),
    ]
    assert events[-1] == Completed("stop")


def test_function_calls_streamed() -> None:
    calls = (
        FunctionCallScript("get_weather", ('{"ci', 'ty":"Paris"}'), call_id="call_a"),
        FunctionCallScript("get_time", ("{}",), call_id="call_b"),
    )
    events = parse(ResponsesScript(content=(), function_calls=calls))
    assert events == [
        ToolCallStarted("call_a", "get_weather"),
        ToolCallArgumentsDelta("call_a", '{"ci'),
        ToolCallArgumentsDelta("call_a", 'ty":"Paris"}'),
        ToolCallStarted("call_b", "get_time"),
        ToolCallArgumentsDelta("call_b", "{}"),
        Usage(13, 5),
        Completed("tool_calls"),
    ]


def test_arguments_only_in_done_events_are_sent_once() -> None:
    call = FunctionCallScript("f", ('{"a":', "1}"), call_id="call_a")
    events = parse(ResponsesScript(content=(), function_calls=(call,), argument_deltas=False))
    assert events == [
        ToolCallStarted("call_a", "f"),
        ToolCallArgumentsDelta("call_a", '{"a":1}'),
        Usage(13, 5),
        Completed("tool_calls"),
    ]


def test_remainder_after_partial_deltas() -> None:
    parser = EventParser()
    item = {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f", "arguments": ""}
    events = feed_all(
        parser,
        [
            {"type": "response.output_item.added", "output_index": 0, "item": item},
            {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": '{"a"'},
            {
                "type": "response.function_call_arguments.done",
                "item_id": "fc_1",
                "arguments": '{"a":1}',
            },
            {
                "type": "response.output_item.done",
                "output_index": 0,
                "item": item | {"arguments": '{"a":1}'},
            },
            {
                "type": "response.completed",
                "response": {"status": "completed", "output": [item | {"arguments": '{"a":1}'}]},
            },
        ],
    )
    assert events == [
        ToolCallStarted("c1", "f"),
        ToolCallArgumentsDelta("c1", '{"a"'),
        ToolCallArgumentsDelta("c1", ":1}"),
        Completed("tool_calls"),
    ]


def test_deltas_found_by_output_index_without_item_id() -> None:
    parser = EventParser()
    item = {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f", "arguments": ""}
    events = feed_all(
        parser,
        [
            {"type": "response.output_item.added", "output_index": 2, "item": item},
            {"type": "response.function_call_arguments.delta", "output_index": 2, "delta": "{}"},
        ],
    )
    assert events == [ToolCallStarted("c1", "f"), ToolCallArgumentsDelta("c1", "{}")]


def test_librechat_variant() -> None:
    """Reasoning events, an attachment event, calls that are never closed and get no
    output, whether LibreChat ran them (web_search) or they are the client's."""
    calls = (
        FunctionCallScript("web_search", ('{"q":', '"x"}'), call_id="call_ran"),
        FunctionCallScript("client_tool", ("{}",), call_id="call_client"),
    )
    script = ResponsesScript(librechat=True, reasoning=("hm",), function_calls=calls)
    streamed = parse(script)
    assert ReasoningDelta("hm") in streamed
    assert text(streamed) == "Hello from responses"
    # Without holding, every call has already gone out as it came.
    assert streamed[-1] == Completed("tool_calls")

    held = parse(script, hold=True, client_tools=frozenset({"client_tool"}))
    assert [e for e in held if isinstance(e, ToolCallStarted | ToolCallArgumentsDelta)] == [
        ToolCallStarted("call_client", "client_tool"),
        ToolCallArgumentsDelta("call_client", "{}"),
    ]
    assert held[-2:] == [Usage(13, 5), Completed("tool_calls")]


def test_held_calls_to_tools_the_client_never_declared_are_the_upstreams() -> None:
    """LibreChat shows a tool it ran as a function_call with no output and no .done:
    only its name tells it from the client's (api/server/controllers/agents/responses.js)."""
    call = FunctionCallScript("web_search", ("{}",), call_id="call_ran")
    events = parse(
        ResponsesScript(librechat=True, function_calls=(call,)), hold=True, client_tools=frozenset()
    )
    assert events == [
        TextDelta("Hello"),
        TextDelta(" from"),
        TextDelta(" responses"),
        Usage(13, 5),
        Completed("stop"),
    ]


def test_held_calls_the_upstream_ran_are_dropped() -> None:
    """An upstream that reports a function_call_output for a call it ran, even to a
    tool the client declared."""
    call = FunctionCallScript("lookup", ("{}",), call_id="call_ran", output="results")
    events = parse(
        ResponsesScript(function_calls=(call,)), hold=True, client_tools=frozenset({"lookup"})
    )
    assert [e for e in events if isinstance(e, ToolCallStarted)] == []
    assert events[-1] == Completed("stop")


def test_librechat_error_ends_with_bare_done() -> None:
    """responses.js: a failure after the headers writes [DONE] and nothing else."""
    script = ResponsesScript(librechat=True, content=("a", "b", "c"), error_after=2)
    with pytest.raises(UpstreamError, match=r"no response\.completed"):
        parse(script)


def test_stream_without_terminal_event_fails() -> None:
    with pytest.raises(UpstreamError, match=r"no response\.completed"):
        parse(ResponsesScript(send_terminal=False))
    with pytest.raises(UpstreamError, match=r"no response\.completed"):
        parse(ResponsesScript(send_terminal=False, send_done=False))


def test_error_then_response_failed() -> None:
    with pytest.raises(UpstreamError, match="fake upstream exploded"):
        parse(ResponsesScript(content=("a", "b"), error_after=1))
    parser = EventParser()
    failed = {"status": "failed", "error": {"code": "server_error", "message": "went wrong"}}
    with pytest.raises(UpstreamError, match="went wrong"):
        feed_all(parser, [{"type": "response.failed", "response": failed}])


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("max_output_tokens", "length"), ("content_filter", "content_filter"), ("other", "length")],
)
def test_incomplete(reason: str, finish: str) -> None:
    events = parse(ResponsesScript(incomplete=reason))
    assert events[-2:] == [Usage(13, 5), Completed(finish)]  # type: ignore[arg-type]


def test_vendor_and_unknown_events_are_ignored() -> None:
    parser = EventParser()
    events = feed_all(
        parser,
        [
            {"type": "librechat:attachment", "attachment": {}},
            {"type": "acme:progress", "delta": "x"},
            {"type": "response.output_text.annotation.added", "annotation": {}},
            {"type": "response.something_new", "delta": "x"},
            {"type": "response.output_text.delta", "item_id": "m", "delta": "ok"},
        ],
    )
    assert events == [TextDelta("ok")]


def test_text_only_in_the_final_response() -> None:
    parser = EventParser()
    final = {
        "status": "completed",
        "output": [
            {"type": "reasoning", "id": "rs", "summary": []},
            {
                "type": "message",
                "id": "msg",
                "content": [{"type": "output_text", "text": "all at once", "annotations": []}],
            },
            {"type": "function_call", "id": "fc", "call_id": "c9", "name": "f", "arguments": "{}"},
        ],
        "usage": {"input_tokens": 2, "output_tokens": 3},
    }
    events = feed_all(parser, [{"type": "response.completed", "response": final}])
    assert events == [
        TextDelta("all at once"),
        ToolCallStarted("c9", "f"),
        ToolCallArgumentsDelta("c9", "{}"),
        Usage(2, 3),
        Completed("tool_calls"),
    ]


def test_final_text_not_repeated_after_deltas() -> None:
    parser = EventParser()
    final = {
        "status": "completed",
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "hi"}]}],
    }
    events = feed_all(
        parser,
        [
            {"type": "response.output_text.delta", "delta": "hi"},
            {"type": "response.completed", "response": final},
        ],
    )
    assert events == [TextDelta("hi"), Completed("stop")]


def test_whole_response_object() -> None:
    parser = EventParser()
    response = {
        "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "cut"}]}],
        "usage": {"input_tokens": 5, "output_tokens": 16},
    }
    assert list(parser.response(response)) == [TextDelta("cut"), Usage(5, 16), Completed("length")]
    parser.finish()  # a terminal was seen


def test_nothing_after_the_terminal_event() -> None:
    parser = EventParser()
    feed_all(parser, [{"type": "response.completed", "response": {"status": "completed"}}])
    assert feed_all(parser, [{"type": "response.output_text.delta", "delta": "late"}]) == []


@pytest.mark.parametrize(
    "script",
    [
        ResponsesScript(),
        ResponsesScript(reasoning=("a", "b")),
        ResponsesScript(reasoning=("a",), reasoning_events="summary"),
        ResponsesScript(content=(), function_calls=(FunctionCallScript("f", ("{", "}")),)),
        ResponsesScript(incomplete="max_output_tokens"),
        ResponsesScript(content=("a", "b"), error_after=1),
    ],
    ids=["text", "reasoning", "summary", "function_call", "incomplete", "failed"],
)
def test_the_fake_speaks_the_specification(script: ResponsesScript) -> None:
    """Outside LibreChat mode the fake's streams pass the gateway's own spec checks."""
    raw = b"".join(b"".join(writes) for _, writes in frames(script, {"model": "m"}))
    check_sse(raw)
