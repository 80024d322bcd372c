from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import openresponses_types as ort
import orjson
import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.dialects.responses_render import (
    ReasoningEvents,
    ResponseBuilder,
    frames,
    usage_json,
)
from gateway.errors import RateLimited, UpstreamError
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
from tests.integration.responses_support import Stream, check_response, check_sse

OPENAI_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
RID = "resp_0011aabb"
USAGE = Usage(input_tokens=10, output_tokens=5, cached_input_tokens=2, reasoning_tokens=1)


def builder(
    stream: bool = True, reasoning_events: ReasoningEvents = "summary", **echo: Any
) -> ResponseBuilder:
    return ResponseBuilder(
        RID,
        "echo",
        echo,
        previous_response_id=None,
        store=True,
        stream=stream,
        reasoning_events=reasoning_events,
    )


def render(
    events: Sequence[Event], reasoning_events: ReasoningEvents = "summary", **echo: Any
) -> Stream:
    """The whole stream as bytes, checked like the gateway's output (framing, models, ids)."""
    b = builder(reasoning_events=reasoning_events, **echo)
    out = b.start()
    for event in events:
        out += b.feed(event)
    assert b.finished
    stream = check_sse(frames(out) + b"data: [DONE]\n\n")
    assert stream.final == b.response
    # The non-streaming builder ends with the same response, and returns no events.
    plain = builder(stream=False, reasoning_events=reasoning_events, **echo)
    assert all(plain.feed(e) == [] for e in events)
    assert {**plain.response, "created_at": 0, "completed_at": 0} == {
        **b.response,
        "created_at": 0,
        "completed_at": 0,
    }
    return stream


def test_text() -> None:
    stream = render([TextDelta("Hel"), TextDelta("lo"), USAGE, Completed()])
    assert stream.types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = stream.final
    assert final["status"] == "completed"
    assert final["output"] == [
        {
            "type": "message",
            "id": f"msg_{RID.removeprefix('resp_')}_0",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}
            ],
        }
    ]
    assert final["usage"] == {
        "input_tokens": 10,
        "output_tokens": 5,
        "total_tokens": 15,
        "input_tokens_details": {"cached_tokens": 2},
        "output_tokens_details": {"reasoning_tokens": 1},
    }
    assert stream.of("response.output_text.done")[0]["text"] == "Hello"
    assert stream.events[0]["response"]["output"] == []


REASONING_THEN_TEXT: list[Event] = [
    ReasoningDelta("Think"),
    ReasoningDelta("ing."),
    TextDelta("Answer"),
    USAGE,
    Completed(),
]
TEXT_ITEM_EVENTS = [
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def test_reasoning_is_a_summary_by_default() -> None:
    # Summary events are both in the spec and in OpenAI's API: the compliance
    # suite, OpenAI's stream helpers and the Vercel AI SDK all read them.
    stream = render(REASONING_THEN_TEXT)
    assert stream.types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        *TEXT_ITEM_EVENTS,
    ]
    reasoning, message = stream.final["output"]
    assert reasoning["type"] == "reasoning" and reasoning["id"].startswith("rs_")
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Thinking."}]
    assert reasoning["content"] == []
    assert message["content"][0]["text"] == "Answer"
    added = stream.of("response.reasoning_summary_part.added")[0]
    assert added["summary_index"] == 0 and added["item_id"] == reasoning["id"]
    assert [e["delta"] for e in stream.of("response.reasoning_summary_text.delta")] == [
        "Think",
        "ing.",
    ]
    assert all(e["summary_index"] == 0 for e in stream.events if "summary_index" in e)
    # OpenAI's own models of these events take them too.
    for event in stream.events:
        if "reasoning" in event["type"]:
            assert OPENAI_EVENT.validate_python(event).type == event["type"]


def test_reasoning_spec_events() -> None:
    stream = render(REASONING_THEN_TEXT, reasoning_events="spec")
    assert stream.types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning.delta",
        "response.reasoning.delta",
        "response.reasoning.done",
        "response.content_part.done",
        "response.output_item.done",
        *TEXT_ITEM_EVENTS,
    ]
    reasoning = stream.final["output"][0]
    assert reasoning["summary"] == []
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "Thinking."}]
    assert stream.of("response.content_part.added")[0]["part"] == {
        "type": "reasoning_text",
        "text": "",
    }


def test_reasoning_openai_events() -> None:
    b = builder(reasoning_events="openai")
    out = b.start()
    for event in REASONING_THEN_TEXT:
        out += b.feed(event)
    types = [e["type"] for e in out]
    assert types[2:9] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    for event in out[2:9]:  # not spec events: checked against OpenAI's own models instead
        assert OPENAI_EVENT.validate_python(event).type == event["type"]
    done = next(e for e in out if e["type"] == "response.reasoning_text.done")
    assert done["text"] == "Thinking." and done["content_index"] == 0
    reasoning = b.response["output"][0]
    assert reasoning["summary"] == []
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "Thinking."}]


def test_two_tool_calls() -> None:
    stream = render(
        [
            ToolCallStarted("call_a", "get_weather"),
            ToolCallArgumentsDelta("call_a", '{"city":'),
            ToolCallArgumentsDelta("call_a", '"Oslo"}'),
            ToolCallStarted("call_b", "get_time"),
            ToolCallArgumentsDelta("call_b", "{}"),
            Usage(),
            Completed("tool_calls"),
        ],
        tools=[
            {
                "type": "function",
                "name": "get_weather",
                "description": None,
                "parameters": None,
                "strict": None,
            }
        ],
    )
    assert stream.types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    a, b = stream.final["output"]
    assert (a["call_id"], a["name"], a["arguments"], a["status"]) == (
        "call_a",
        "get_weather",
        '{"city":"Oslo"}',
        "completed",
    )
    assert (b["call_id"], b["name"], b["arguments"]) == ("call_b", "get_time", "{}")
    assert a["id"].startswith("fc_") and a["id"] != b["id"]
    added = stream.of("response.output_item.added")[0]["item"]
    assert added["arguments"] == "" and added["status"] == "in_progress"
    assert stream.final["status"] == "completed"  # tool_calls is a normal end


def test_interleaved_arguments_of_parallel_calls_are_kept() -> None:
    stream = render(
        [
            ToolCallStarted("call_a", "get_weather"),
            ToolCallArgumentsDelta("call_a", '{"city":'),
            ToolCallStarted("call_b", "get_time"),
            ToolCallArgumentsDelta("call_b", '{"zone":'),
            ToolCallArgumentsDelta("call_a", '"Oslo"}'),
            ToolCallArgumentsDelta("call_b", '"UTC"}'),
            ToolCallStarted("call_c", "get_date"),
            Completed("tool_calls"),
        ]
    )
    calls = [(i["call_id"], i["arguments"]) for i in stream.final["output"]]
    assert calls == [
        ("call_a", '{"city":"Oslo"}'),
        ("call_b", '{"zone":"UTC"}'),
        ("call_c", ""),
    ]
    assert [i["output_index"] for i in stream.of("response.output_item.added")] == [0, 1, 2]


def test_text_then_tool_call() -> None:
    stream = render(
        [
            TextDelta("Let me check."),
            ToolCallStarted("c", "f"),
            ToolCallArgumentsDelta("c", "{}"),
            Completed("tool_calls"),
        ]
    )
    assert [i["type"] for i in stream.final["output"]] == ["message", "function_call"]
    assert stream.final["usage"] is None  # the backend reported none


def test_incomplete() -> None:
    stream = render([TextDelta("one "), TextDelta("two"), USAGE, Completed("length")])
    assert stream.types[-2:] == ["response.output_item.done", "response.incomplete"]
    final = stream.final
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["completed_at"] is None
    assert final["output"][0]["status"] == "incomplete"
    assert stream.of("response.output_item.done")[0]["item"]["status"] == "incomplete"


def test_content_filter() -> None:
    stream = render([TextDelta("x"), Completed("content_filter")])
    assert stream.final["incomplete_details"] == {"reason": "content_filter"}


def test_failed_mid_text() -> None:
    error = UpstreamError("The upstream failed mid-stream: boom")
    stream = render([TextDelta("par"), TextDelta("tial"), Failed(error)])
    assert stream.types[-6:] == [
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "error",
        "response.failed",
    ]
    event = stream.of("error")[0]
    assert event["error"] == {
        "message": "The upstream failed mid-stream: boom",
        "type": "upstream_error",
        "param": None,
        "code": "upstream_error",
    }
    final = stream.final
    assert final["status"] == "failed"
    assert final["error"] == {"code": "upstream_error", "message": error.message}
    assert final["output"][0]["status"] == "incomplete"
    assert final["output"][0]["content"][0]["text"] == "partial"


def test_failed_before_output_keeps_the_code() -> None:
    stream = render([Failed(RateLimited("slow down", code="rate_limit_exceeded"))])
    assert stream.types == ["response.created", "response.in_progress", "error", "response.failed"]
    assert stream.final["error"] == {"code": "rate_limit_exceeded", "message": "slow down"}
    assert stream.final["output"] == []


def test_arguments_for_an_unknown_call_are_dropped() -> None:
    stream = render(
        [ToolCallStarted("a", "f"), ToolCallArgumentsDelta("zzz", "x"), Completed("tool_calls")]
    )
    assert stream.final["output"][0]["arguments"] == ""


def test_echo_and_defaults_make_a_valid_response() -> None:
    b = ResponseBuilder(
        RID,
        "agent-x",
        {"instructions": "hi", "metadata": {"k": "v"}, "tool_choice": "none"},
        previous_response_id="resp_prev",
        store=False,
        background=True,
    )
    [created, in_progress] = b.start()
    for event in (created, in_progress):
        assert event["response"]["status"] == "in_progress"
        check_response(event["response"])
    response = created["response"]
    assert response["model"] == "agent-x"
    assert response["previous_response_id"] == "resp_prev"
    assert (response["store"], response["background"]) == (False, True)
    assert response["instructions"] == "hi" and response["metadata"] == {"k": "v"}
    assert (created["sequence_number"], in_progress["sequence_number"]) == (0, 1)
    assert len(response) == 31


def test_frames() -> None:
    raw = frames([{"type": "response.created", "sequence_number": 0, "x": "a\nb"}])
    assert raw == (
        b'event: response.created\ndata: {"type":"response.created","sequence_number":0,'
        b'"x":"a\\nb"}\n\n'
    )
    assert frames([]) == b""


def test_usage_json_validates() -> None:
    ort.Usage.model_validate(usage_json(USAGE))
    assert orjson.loads(orjson.dumps(usage_json(Usage())))["total_tokens"] == 0


@pytest.mark.parametrize("n", [1, 3, 50])
def test_sequence_numbers_have_no_gaps(n: int) -> None:
    stream = render([TextDelta("w ") for _ in range(n)] + [Completed()])
    assert [e["sequence_number"] for e in stream.events] == list(range(len(stream.events)))
    assert stream.text == "w " * n
