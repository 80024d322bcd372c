"""The ``a2a`` backend's wire: the message it sends, and the answers it reads."""

from __future__ import annotations

from typing import Any

import pytest
from gateway_plugins.backends.a2a_wire import StreamParser, request_body

from gateway.plugin import (
    AgentInvocation,
    Completed,
    FilePart,
    FunctionCall,
    FunctionCallOutput,
    ImagePart,
    InvalidRequest,
    Message,
    TextDelta,
    TextPart,
    UpstreamError,
    Usage,
)


def result(value: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": "r", "result": value}


def status(state: str, **more: Any) -> dict[str, Any]:
    return result({"statusUpdate": {"taskId": "t", "status": {"state": state}, **more}})


def test_the_last_user_message_is_sent_with_the_conversation_before_it() -> None:
    inv = AgentInvocation(
        agent="a",
        instructions="be brief",
        input=(
            Message("user", (TextPart("hi"),)),
            Message("assistant", (TextPart("hello"),)),
            Message(
                "user",
                (
                    TextPart("look"),
                    ImagePart(url="https://x/cat.png"),
                    FilePart(filename="a.txt", data="data:text/plain;base64,aGk="),
                ),
            ),
        ),
    )
    body = request_body(inv, "msg-1", "req-1")
    assert (body["jsonrpc"], body["id"], body["method"]) == ("2.0", "req-1", "SendStreamingMessage")
    message = body["params"]["message"]
    assert message["messageId"] == "msg-1" and message["role"] == "ROLE_USER"
    first, *parts = message["parts"]
    assert first["text"].startswith("The conversation so far:\n[instructions] be brief\n")
    assert "[user] hi\n[assistant] hello" in first["text"]
    assert parts == [
        {"text": "look"},
        {"url": "https://x/cat.png"},
        {"raw": "aGk=", "mediaType": "text/plain", "filename": "a.txt"},
    ]


def test_function_results_after_the_message_go_as_data_parts() -> None:
    inv = AgentInvocation(
        agent="a",
        input=(
            Message("user", (TextPart("weather?"),)),
            FunctionCall("c1", "weather", "{}"),
            FunctionCallOutput("c1", "sunny"),
        ),
    )
    parts = request_body(inv, "m", "r")["params"]["message"]["parts"]
    output = {"callId": "c1", "output": "sunny"}
    assert parts == [{"text": "weather?"}, {"data": {"functionCallOutput": output}}]
    with pytest.raises(InvalidRequest):
        request_body(AgentInvocation(agent="a", input=()), "m", "r")


def test_a_streamed_task_is_its_artifact_text_then_the_end_with_reported_usage() -> None:
    p = StreamParser()
    assert p.feed(result({"task": {"id": "t", "status": {"state": "TASK_STATE_SUBMITTED"}}})) == []
    assert p.feed(status("TASK_STATE_WORKING")) == []
    chunk = {"artifactUpdate": {"artifact": {"parts": [{"text": "hi"}, {"data": {"a": 1}}]}}}
    assert p.feed(result(chunk)) == [TextDelta("hi"), TextDelta('{"a":1}')]
    usage = {"usage": {"inputTokens": 5, "outputTokens": 2}}
    done = p.feed(status("TASK_STATE_COMPLETED", metadata=usage))
    assert done == [Usage(input_tokens=5, output_tokens=2), Completed("stop")] and p.done
    p.finish()


def test_an_answer_in_a_message_or_a_final_status_message_is_the_text() -> None:
    p = StreamParser()
    message = {"message": {"role": "ROLE_AGENT", "parts": [{"text": "at once"}]}}
    assert p.feed(result(message)) == [TextDelta("at once"), Completed("stop")]
    p = StreamParser()
    words = {"message": {"parts": [{"text": "what city?"}]}}
    asks = result({"statusUpdate": {"status": {"state": "TASK_STATE_INPUT_REQUIRED", **words}}})
    assert p.feed(asks) == [TextDelta("what city?"), Completed("stop")]
    p = StreamParser()
    task = {"status": {"state": "TASK_STATE_COMPLETED"}, "artifacts": [{"parts": [{"text": "x"}]}]}
    assert p.feed(result({"task": task})) == [TextDelta("x"), Completed("stop")]


def test_failures_are_the_agents_own_words() -> None:
    failed = {"message": {"parts": [{"text": "no way"}]}}
    with pytest.raises(UpstreamError, match="TASK_STATE_FAILED: no way"):
        StreamParser().feed(
            result({"statusUpdate": {"status": {"state": "TASK_STATE_FAILED", **failed}}})
        )
    with pytest.raises(UpstreamError, match="-32603: broke"):
        StreamParser().feed({"error": {"code": -32603, "message": "broke"}})
    with pytest.raises(InvalidRequest, match="bad params"):
        StreamParser().feed({"error": {"code": -32602, "message": "bad params"}})
    with pytest.raises(UpstreamError, match="not JSON"):
        StreamParser().feed_data("{nope")
    with pytest.raises(UpstreamError, match="ended before"):
        StreamParser().finish()
    bad_usage = {"usage": {"inputTokens": -1, "outputTokens": True}}
    p = StreamParser()
    assert p.feed(status("TASK_STATE_COMPLETED", metadata=bad_usage)) == [Completed("stop")]
