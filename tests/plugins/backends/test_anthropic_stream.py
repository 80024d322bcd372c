"""``anthropic_stream``: recorded streams (and whole messages) to events.

The streams below follow the examples of Anthropic's "Streaming Messages"
documentation (basic text, extended thinking, tool use with streamed input).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import pytest
from gateway_plugins.backends.anthropic_stream import (
    EventParser,
    message_as_events,
    usage_from,
)

from gateway.errors import UpstreamError
from gateway.events import (
    Completed,
    Event,
    Failed,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    Usage,
)

# EventParser

TEXT_STREAM: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-opus-4-20250514",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 15},
    },
    {"type": "message_stop"},
]

THINKING_STREAM: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_01BPvsqQpWjzPJxUuvgxJJu3",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-sonnet-4-5",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 42, "output_tokens": 3},
        },
    },
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {
            "type": "thinking_delta",
            "thinking": "Let me solve this step by step:\n\n1. First break down 27 * 453",
        },
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "\n2. 453 = 400 + 50 + 3"},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrk"},
    },
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "text_delta", "text": "27 * 453 = 12,231"},
    },
    {"type": "content_block_stop", "index": 1},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 120},
    },
    {"type": "message_stop"},
]


def tool_stream(*blocks: list[dict[str, Any]], output_tokens: int = 89) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
                "type": "message",
                "role": "assistant",
                "model": "claude-opus-4-20250514",
                "stop_sequence": None,
                "usage": {"input_tokens": 472, "output_tokens": 2},
                "content": [],
                "stop_reason": None,
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Okay, let's check the weather:"},
        },
        {"type": "content_block_stop", "index": 0},
    ]
    for block in blocks:
        events.extend(block)
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        }
    )
    events.append({"type": "message_stop"})
    return events


def tool_block(
    index: int, call_id: str, name: str, pieces: Iterable[str], start_input: object = None
) -> list[dict[str, Any]]:
    start = {"type": "tool_use", "id": call_id, "name": name, "input": start_input or {}}
    block: list[dict[str, Any]] = [
        {"type": "content_block_start", "index": index, "content_block": start}
    ]
    for piece in pieces:
        delta = {"type": "input_json_delta", "partial_json": piece}
        block.append({"type": "content_block_delta", "index": index, "delta": delta})
    block.append({"type": "content_block_stop", "index": index})
    return block


def parse(events: Iterable[Mapping[str, Any]]) -> list[Event]:
    """Feed ``events`` as the backend does: stop at ``message_stop``, then ``finish``."""
    parser = EventParser()
    out: list[Event] = []
    for event in events:
        out.extend(parser.feed(event))
        if parser.done:
            break
    out.extend(parser.finish())
    return out


def test_text_stream() -> None:
    assert parse(TEXT_STREAM) == [
        TextDelta("Hello"),
        TextDelta("!"),
        Usage(input_tokens=25, output_tokens=15),
        Completed("stop"),
    ]


def test_thinking_then_text() -> None:
    assert parse(THINKING_STREAM) == [
        ReasoningDelta("Let me solve this step by step:\n\n1. First break down 27 * 453"),
        ReasoningDelta("\n2. 453 = 400 + 50 + 3"),
        TextDelta("27 * 453 = 12,231"),
        Usage(input_tokens=42, output_tokens=120),
        Completed("stop"),
    ]


def test_tool_use_with_streamed_input() -> None:
    pieces = ["", '{"location":', ' "San Francisc', 'o, CA"', ', "unit": "fah', 'renheit"}']
    events = parse(
        tool_stream(tool_block(1, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", pieces))
    )
    call = "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert events == [
        TextDelta("Okay, let's check the weather:"),
        ToolCallStarted(call, "get_weather"),
        *[ToolCallArgumentsDelta(call, p) for p in pieces if p],
        Usage(input_tokens=472, output_tokens=89),
        Completed("tool_calls"),
    ]
    arguments = "".join(e.arguments for e in events if isinstance(e, ToolCallArgumentsDelta))
    assert orjson.loads(arguments) == {"location": "San Francisco, CA", "unit": "fahrenheit"}


def test_parallel_tool_uses() -> None:
    events = parse(
        tool_stream(
            tool_block(1, "toolu_a", "get_weather", ['{"city"', ': "Paris"}']),
            tool_block(2, "toolu_b", "get_time", ['{"zone": ', '"CET"}']),
        )
    )
    calls: dict[str, str] = {}
    names: dict[str, str] = {}
    for e in events:
        if isinstance(e, ToolCallStarted):
            names[e.call_id] = e.name
            calls[e.call_id] = ""
        elif isinstance(e, ToolCallArgumentsDelta):
            calls[e.call_id] += e.arguments
    assert names == {"toolu_a": "get_weather", "toolu_b": "get_time"}
    assert {k: orjson.loads(v) for k, v in calls.items()} == {
        "toolu_a": {"city": "Paris"},
        "toolu_b": {"zone": "CET"},
    }
    assert events[-1] == Completed("tool_calls")


def test_tool_use_with_input_given_whole_at_the_start() -> None:
    events = parse(tool_stream(tool_block(1, "toolu_w", "f", [], start_input={"q": "x"})))
    assert ToolCallArgumentsDelta("toolu_w", '{"q":"x"}') in events


def test_tool_use_without_input_has_empty_object_arguments() -> None:
    events = parse(tool_stream(tool_block(1, "toolu_e", "ping", [""])))
    assert [e for e in events if isinstance(e, ToolCallArgumentsDelta)] == [
        ToolCallArgumentsDelta("toolu_e", "{}")
    ]


def test_cache_usage() -> None:
    stream = [dict(e) for e in TEXT_STREAM]
    stream[0] = {
        "type": "message_start",
        "message": {
            **TEXT_STREAM[0]["message"],
            "usage": {
                "input_tokens": 50,
                "cache_creation_input_tokens": 1000,
                "cache_read_input_tokens": 2000,
                "output_tokens": 1,
            },
        },
    }
    (usage,) = [e for e in parse(stream) if isinstance(e, Usage)]
    assert usage == Usage(
        input_tokens=3050, output_tokens=15, cached_input_tokens=2000, cache_write_tokens=1000
    )


def test_the_last_message_delta_usage_wins() -> None:
    stream = [*TEXT_STREAM[:-2]]
    stream.append({"type": "message_delta", "delta": {}, "usage": {"output_tokens": 5}})
    stream.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 30, "input_tokens": 26, "cache_read_input_tokens": None},
        }
    )
    stream.append({"type": "message_stop"})
    (usage,) = [e for e in parse(stream) if isinstance(e, Usage)]
    assert (usage.input_tokens, usage.output_tokens) == (26, 30)


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
    ],
)
def test_stop_reasons(reason: str, finish: str) -> None:
    stream = [dict(e) for e in TEXT_STREAM]
    stream[-2] = {
        "type": "message_delta",
        "delta": {
            "stop_reason": reason,
            "stop_sequence": "END" if reason == "stop_sequence" else None,
        },
        "usage": {"output_tokens": 4096 if reason == "max_tokens" else 15},
    }
    matched = "END" if reason == "stop_sequence" else None  # which stop sequence, passed on
    assert parse(stream)[-1] == Completed(finish, matched)  # type: ignore[arg-type]


def test_error_event_raises_with_its_message() -> None:
    stream = [
        *TEXT_STREAM[:4],
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]
    parser = EventParser()
    seen: list[Event] = []
    with pytest.raises(UpstreamError) as caught:
        for event in stream:
            seen.extend(parser.feed(event))
    assert seen == [TextDelta("Hello")]
    assert "overloaded_error" in caught.value.message and "Overloaded" in caught.value.message
    assert caught.value.status == 502


def test_cut_stream_fails() -> None:
    events = parse(TEXT_STREAM[:5])
    assert events[:2] == [TextDelta("Hello"), TextDelta("!")]
    assert not any(isinstance(e, Usage | Completed) for e in events)
    (failed,) = events[2:]
    assert isinstance(failed, Failed)
    assert "ended before the answer was complete" in failed.error.message


def test_stream_ending_after_message_delta_without_message_stop_fails() -> None:
    events = parse(TEXT_STREAM[:-1])
    assert isinstance(events[-1], Failed)


def test_ping_unknown_events_and_blocks_are_ignored() -> None:
    stream = [
        TEXT_STREAM[0],
        {"type": "ping"},
        {"type": "some_future_event", "x": 1},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "redacted_thinking", "data": "E"},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "text", "text": "Hi"},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "citations_delta", "citation": {}},
        },
        {"type": "content_block_stop", "index": 1},
        *TEXT_STREAM[-2:],
    ]
    assert parse(stream) == [TextDelta("Hi"), Usage(25, 15), Completed("stop")]


@pytest.mark.parametrize(
    "event",
    [
        {"type": "content_block_stop"},
        {"type": "content_block_delta", "index": 0, "delta": "x"},
        {"type": "content_block_start", "index": 0, "content_block": None},
        {
            "type": "content_block_delta",
            "index": 5,
            "delta": {"type": "input_json_delta", "partial_json": "{"},
        },
    ],
)
def test_malformed_events_raise(event: dict[str, Any]) -> None:
    parser = EventParser()
    with pytest.raises(UpstreamError):
        list(parser.feed(TEXT_STREAM[0]))
        list(parser.feed(event))


def test_usage_from_ignores_junk() -> None:
    assert (
        usage_from({"input_tokens": -1, "output_tokens": True, "cache_read_input_tokens": "9"})
        == Usage()
    )


def test_a_whole_message_gives_the_events_its_stream_would() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [
            {"type": "thinking", "thinking": "hm", "signature": "s"},
            {"type": "text", "text": "Done."},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
        ],
        "stop_reason": "stop_sequence",
        "stop_sequence": "END",
        "usage": {"input_tokens": 5, "cache_read_input_tokens": 2, "output_tokens": 7},
    }
    parser = EventParser()
    events = list(parser.feed_all(message_as_events(message)))
    assert events == [
        ReasoningDelta("hm"),
        TextDelta("Done."),
        ToolCallStarted("toolu_1", "f"),
        ToolCallArgumentsDelta("toolu_1", '{"a":1}'),
        Usage(input_tokens=7, output_tokens=7, cached_input_tokens=2),
        Completed("stop", "END"),
    ]
    assert parser.done and list(parser.finish()) == []


def test_a_whole_error_or_malformed_message_is_the_upstreams_fault() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    with pytest.raises(UpstreamError, match="busy"):
        list(EventParser().feed_all(message_as_events(error)))
    with pytest.raises(UpstreamError):
        message_as_events({"type": "message", "content": "text"})
