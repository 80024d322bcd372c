"""``gateway.dialects.responses_output``: output items' JSON as they are built (the
events around them are ``test_responses_render.py``'s)."""

from __future__ import annotations

from gateway.dialects.responses_output import REASONING_EVENTS, OutputItem, usage_json
from gateway.events import Usage


def test_an_item_in_progress_has_no_content_yet() -> None:
    item = OutputItem("message", "msg_1_0", 0)
    item.text += ["Hel", "lo"]
    assert item.json("in_progress")["content"] == []
    assert item.json("completed")["content"] == [
        {"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}
    ]


def test_reasoning_is_a_summary_or_content() -> None:
    summary = OutputItem("reasoning", "rs_1_0", 0, summary=True)
    summary.text.append("hmm")
    assert summary.json("completed")["summary"] == [{"type": "summary_text", "text": "hmm"}]
    content = OutputItem("reasoning", "rs_1_0", 0)
    content.text.append("hmm")
    assert content.json("completed")["content"] == [{"type": "reasoning_text", "text": "hmm"}]
    assert REASONING_EVENTS == ("summary", "spec", "openai")


def test_a_function_call_carries_its_arguments() -> None:
    call = OutputItem("function_call", "fc_1_0", 0, "call_1", "f")
    call.text.append('{"a":1}')
    assert call.json("completed")["arguments"] == '{"a":1}'
    assert usage_json(Usage(3, 2))["total_tokens"] == 5
