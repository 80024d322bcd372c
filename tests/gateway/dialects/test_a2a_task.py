"""A call's events as an A2A task: its lifecycle, its stream responses, its cost."""

from __future__ import annotations

from gateway.dialects.a2a_task import (
    CANCELED,
    COMPLETED,
    FAILED,
    INPUT_REQUIRED,
    SUBMITTED,
    WORKING,
    TaskBuilder,
    is_final,
    trimmed,
)
from gateway.errors import UpstreamError
from gateway.events import (
    Completed,
    Failed,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    Usage,
)
from gateway.invocation import FunctionCall, Message, TextPart

USER = {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}
USAGE = Usage(input_tokens=3, output_tokens=2, credits=7)


def test_a_task_goes_submitted_working_completed_with_its_text_and_cost() -> None:
    b = TaskBuilder("echo", USER, None)
    first, working = b.begin()
    assert first["task"]["status"]["state"] == SUBMITTED
    assert first["task"]["contextId"].startswith("ctx-")
    assert working["statusUpdate"]["status"]["state"] == WORKING
    chunks = b.feed((TextDelta("he"), TextDelta("llo")))
    assert [c["artifactUpdate"]["append"] for c in chunks] == [False, True]
    assert not b.ended
    assert b.feed((Usage(1, 1), Completed("stop"))) == [] and b.ended
    [final] = b.final(USAGE)
    assert is_final(final) and final["statusUpdate"]["status"]["state"] == COMPLETED
    task = b.task
    assert task["artifacts"][0]["parts"] == [{"text": "hello"}]
    assert task["metadata"]["cost"] == {"credits": 7, "usd": "0.000007"}
    assert task["metadata"]["usage"]["inputTokens"] == 3
    assert final["statusUpdate"]["metadata"]["cost"]["credits"] == 7
    assert [m["role"] for m in task["history"]] == ["ROLE_USER", "ROLE_AGENT"]
    assert task["history"][0]["taskId"] == task["id"]
    assert b.output_items() == [Message("assistant", (TextPart("hello"),))]


def test_a_failure_ends_the_task_failed_with_the_message() -> None:
    b = TaskBuilder("echo", USER, "ctx-9")
    b.begin()
    b.feed((TextDelta("par"), Failed(UpstreamError("upstream broke"))))
    [final] = b.final(USAGE)
    status = final["statusUpdate"]["status"]
    assert status["state"] == FAILED
    assert status["message"]["parts"] == [{"text": "upstream broke"}]
    assert b.task["contextId"] == "ctx-9"
    assert b.task["metadata"]["error"]["status"] == 502


def test_a_function_call_asks_the_client_for_input() -> None:
    b = TaskBuilder("echo", USER, None)
    b.begin()
    b.feed((ToolCallStarted("c1", "lookup"), ToolCallArgumentsDelta("c1", '{"q":1}')))
    b.feed((Completed("tool_calls"),))
    [final] = b.final(USAGE)
    assert final["statusUpdate"]["status"]["state"] == INPUT_REQUIRED and is_final(final)
    [part] = final["statusUpdate"]["status"]["message"]["parts"]
    assert part == {
        "data": {"functionCall": {"callId": "c1", "name": "lookup", "arguments": '{"q":1}'}}
    }
    assert b.output_items() == [FunctionCall("c1", "lookup", '{"q":1}')]
    # The client's answer continues the same task.
    again = TaskBuilder("echo", USER, None, previous=b.task)
    assert again.task_id == b.task_id and len(again.task["history"]) == 3


def test_a_cancel_ends_the_task_canceled_and_history_can_be_trimmed() -> None:
    b = TaskBuilder("echo", USER, None)
    b.begin()
    b.feed((TextDelta("x"),))
    [final] = b.final(USAGE, canceled=True)
    assert final["statusUpdate"]["status"]["state"] == CANCELED
    assert trimmed(b.task, 0)["history"] == []
    assert len(trimmed(b.task, None)["history"]) == 2
    assert "artifacts" not in trimmed(b.task, None, artifacts=False)
