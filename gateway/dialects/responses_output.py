"""The pieces of an Open Responses response under construction: its output items and
their JSON, usage, and the three wire forms of reasoning (``ResponseBuilder`` in
``gateway.dialects.responses_render`` says why there are three)."""

from __future__ import annotations

from typing import Any

from gateway.events import Usage
from gateway.route import REASONING_EVENTS as REASONING_EVENTS
from gateway.route import ReasoningEvents as ReasoningEvents

Json = dict[str, Any]

REASONING_DELTA = {"spec": "response.reasoning.delta", "openai": "response.reasoning_text.delta"}
REASONING_DONE = {"spec": "response.reasoning.done", "openai": "response.reasoning_text.done"}


def usage_json(usage: Usage) -> Json:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


class OutputItem:
    """One output item under construction."""

    __slots__ = ("call_id", "id", "index", "kind", "name", "summary", "text")

    def __init__(
        self,
        kind: str,
        item_id: str,
        index: int,
        call_id: str = "",
        name: str = "",
        *,
        summary: bool = False,
    ):
        self.kind = kind  # "message", "reasoning" or "function_call"
        self.id = item_id
        self.index = index
        self.call_id = call_id
        self.name = name
        self.summary = summary  # reasoning carried as a summary part, not content
        self.text: list[str] = []

    def json(self, status: str) -> Json:
        text = "".join(self.text)
        if self.kind == "message":
            content = [output_text(text)] if status != "in_progress" else []
            return {
                "type": "message",
                "id": self.id,
                "status": status,
                "role": "assistant",
                "content": content,
            }
        if self.kind == "function_call":
            return {
                "type": "function_call",
                "id": self.id,
                "call_id": self.call_id,
                "name": self.name,
                "arguments": text,
                "status": status,
            }
        parts = [reasoning_part(self.summary, text)] if status != "in_progress" else []
        return {
            "type": "reasoning",
            "id": self.id,
            "status": status,
            "summary": parts if self.summary else [],
            "content": [] if self.summary else parts,
        }


def reasoning_part(summary: bool, text: str) -> Json:
    return {"type": "summary_text" if summary else "reasoning_text", "text": text}


def output_text(text: str) -> Json:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
