"""Fold a finished event stream into one answer, for non-streaming responses."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.events import (
    Completed,
    Event,
    Failed,
    FinishReason,
    ReasoningDelta,
    TextDelta,
    TokenLogprob,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    Usage,
)


@dataclass(slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str = ""


_NO_USAGE = Usage()  # frozen: one for every transcript that has none yet


@dataclass(slots=True)
class Transcript:
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None  # when any text delta carried some
    reasoning: list[str] = field(default_factory=list)
    tool_calls: dict[str, ToolCall] = field(default_factory=dict)
    usage: Usage = _NO_USAGE
    finish_reason: FinishReason | None = None
    failure: Failed | None = None

    def add(self, event: Event) -> None:
        # The events of most answers, by their exact type; any other through ``_add``.
        if type(event) is TextDelta and event.logprobs is None:
            self.text.append(event.text)
        elif type(event) is Usage:
            self.usage = event
        elif type(event) is Completed:
            self.finish_reason = event.finish_reason
        else:
            self._add(event)

    def _add(self, event: Event) -> None:
        if isinstance(event, TextDelta):
            self.text.append(event.text)
            if event.logprobs is not None:
                if self.logprobs is None:
                    self.logprobs = []
                self.logprobs.extend(event.logprobs)
        elif isinstance(event, ReasoningDelta):
            self.reasoning.append(event.text)
        elif isinstance(event, ToolCallStarted):
            self.tool_calls[event.call_id] = ToolCall(event.call_id, event.name)
        elif isinstance(event, ToolCallArgumentsDelta):
            call = self.tool_calls.get(event.call_id)
            if call is not None:
                call.arguments += event.arguments
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, Completed):
            self.finish_reason = event.finish_reason
        elif isinstance(event, Failed):
            self.failure = event
