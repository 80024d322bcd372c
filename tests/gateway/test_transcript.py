from __future__ import annotations

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
from gateway.transcript import ToolCall, Transcript


def test_folds_a_stream() -> None:
    t = Transcript()
    events: list[Event] = [
        ReasoningDelta("r1"),
        TextDelta("a"),
        ToolCallStarted("c1", "f"),
        ToolCallArgumentsDelta("c1", '{"x":'),
        ToolCallStarted("c2", "g"),
        ToolCallArgumentsDelta("c2", "{}"),
        ToolCallArgumentsDelta("c1", "1}"),
        ToolCallArgumentsDelta("unknown", "ignored"),
        TextDelta("b"),
        Usage(1, 2),
        Completed("tool_calls"),
    ]
    for event in events:
        t.add(event)
    assert "".join(t.text) == "ab" and t.reasoning == ["r1"]
    assert list(t.tool_calls.values()) == [
        ToolCall("c1", "f", '{"x":1}'),
        ToolCall("c2", "g", "{}"),
    ]
    assert (t.usage, t.finish_reason, t.failure) == (Usage(1, 2), "tool_calls", None)


def test_records_a_failure() -> None:
    t = Transcript()
    failed = Failed(UpstreamError("x"))
    t.add(TextDelta("a"))
    t.add(failed)
    assert t.failure is failed and t.finish_reason is None
