"""Render canonical events as an Open Responses response and its event stream.

``ResponseBuilder`` is fed the events of one call and keeps the response
object up to date (``gateway.dialects.dialect``'s ``Folder``, and with
``stream=True`` its ``Streamer``); ``stream=True`` makes it also return the
semantic events in the spec's order: ``response.created`` and ``response.in_progress``; for
each output item ``output_item.added``, its content events, ``output_item.done``;
then exactly one of ``response.completed``, ``response.incomplete`` or
(after an ``error`` event) ``response.failed``. Sequence numbers start at 0
with no gaps; item ids are stable from added to completed.

An item starts when the kind of content changes (reasoning, text, a new tool
call) and is finished when the next one starts or the stream ends.

Reasoning has three wire forms, because clients disagree on which one they read
(``reasoning_events``, set per route in ``gateway.yaml``):

- ``summary`` (the default): the reasoning is the item's one summary part,
  ``reasoning_summary_part.added``, ``reasoning_summary_text.delta``...,
  ``reasoning_summary_text.done``, ``reasoning_summary_part.done``. These events
  are in the Open Responses spec and in OpenAI's API alike, so the compliance
  suite, OpenAI's Python and Node stream helpers and the Vercel AI SDK (which
  reads nothing but summaries) all accept and show it.
- ``spec``: a ``reasoning_text`` content part with the spec's
  ``response.reasoning.delta`` / ``.done``, which OpenAI's SDKs do not know.
- ``openai``: the same part with OpenAI's ``response.reasoning_text.delta`` /
  ``.done``, which the spec (and its compliance suite) does not know.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from gateway import sse
from gateway.dialects.openai_errors import error_object
from gateway.dialects.responses_output import (
    REASONING_DELTA,
    REASONING_DONE,
    Json,
    OutputItem,
    output_text,
    reasoning_part,
    usage_json,
)
from gateway.dialects.responses_output import REASONING_EVENTS as REASONING_EVENTS
from gateway.dialects.responses_output import ReasoningEvents as ReasoningEvents
from gateway.errors import GatewayError
from gateway.events import (
    Batch,
    Completed,
    Event,
    Failed,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    Usage,
)
from gateway.wire.responses_items import item_id

_INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


class ResponseBuilder:
    def __init__(
        self,
        response_id: str,
        model: str,
        echo: dict[str, Any],
        *,
        previous_response_id: str | None,
        store: bool,
        background: bool = False,
        stream: bool = True,
        reasoning_events: ReasoningEvents = "summary",
    ) -> None:
        self.response_id = response_id
        self._stream = stream
        self._reasoning = reasoning_events
        self._seq = 0
        self._items: list[OutputItem] = []
        self._open: OutputItem | None = None
        self._calls: dict[str, OutputItem] = {}
        # Calls started while another call streams: announced when it is done.
        self._pending: list[OutputItem] = []
        self.failure: GatewayError | None = None
        self.response: Json = {
            "id": response_id,
            "object": "response",
            "created_at": int(time.time()),
            "completed_at": None,
            "status": "in_progress",
            "incomplete_details": None,
            "model": model,
            "previous_response_id": previous_response_id,
            "instructions": None,
            "output": [],
            "error": None,
            "tools": [],
            "tool_choice": "auto",
            "truncation": "disabled",
            "parallel_tool_calls": True,
            "text": {"format": {"type": "text"}},
            "top_p": 1.0,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
            "top_logprobs": 0,
            "temperature": 1.0,
            "reasoning": None,
            "usage": None,
            "max_output_tokens": None,
            "max_tool_calls": None,
            "store": store,
            "background": background,
            "service_tier": "default",
            "metadata": {},
            "safety_identifier": None,
            "prompt_cache_key": None,
        }
        self.response.update(echo)

    @property
    def finished(self) -> bool:
        return bool(self.response["status"] != "in_progress")

    def head(self) -> bytes:
        return frames(self.start())

    def frames(self, batch: Batch) -> bytes:
        """The SSE frames of ``batch``'s events; after the terminal one, ``[DONE]``."""
        feed = self.feed
        out = [json for event in batch for json in feed(event)]
        data = frames(out) if out else b""
        return data + sse.DONE if self.finished else data

    def fold(self, batch: Batch) -> None:
        feed = self.feed
        for event in batch:
            feed(event)

    def body(self) -> Json:
        if self.failure is not None:
            raise self.failure
        return self.response

    def start(self) -> list[Json]:
        return [
            self._event("response.created", response=self._snapshot()),
            self._event("response.in_progress", response=self._snapshot()),
        ]

    def feed(self, event: Event) -> list[Json]:
        """Apply one canonical event; return the stream events it produces."""
        out: list[Json] = []
        if isinstance(event, TextDelta):
            item = self._item("message", out)
            item.text.append(event.text)
            out.append(
                self._item_event(
                    "response.output_text.delta",
                    item,
                    content_index=0,
                    delta=event.text,
                    logprobs=[],
                )
            )
        elif isinstance(event, ReasoningDelta):
            item = self._item("reasoning", out)
            item.text.append(event.text)
            if item.summary:
                out.append(
                    self._item_event(
                        "response.reasoning_summary_text.delta",
                        item,
                        summary_index=0,
                        delta=event.text,
                    )
                )
            else:
                out.append(
                    self._item_event(
                        REASONING_DELTA[self._reasoning],
                        item,
                        content_index=0,
                        delta=event.text,
                    )
                )
        elif isinstance(event, ToolCallStarted):
            if self._open is not None and self._open.kind == "function_call":
                # Items stream one at a time, but an upstream may interleave the
                # arguments of parallel calls: hold this one until the open one is done.
                held = OutputItem("function_call", "", -1, event.call_id, event.name)
                self._pending.append(held)
                self._calls[event.call_id] = held
            else:
                self._close(out, "completed")
                self._add("function_call", out, call_id=event.call_id, name=event.name)
        elif isinstance(event, ToolCallArgumentsDelta):
            item_or_none = self._calls.get(event.call_id)
            if item_or_none in self._pending:
                item_or_none.text.append(event.arguments)
            elif item_or_none is not None and item_or_none is self._open:
                item_or_none.text.append(event.arguments)
                out.append(
                    self._event(
                        "response.function_call_arguments.delta",
                        item_id=item_or_none.id,
                        output_index=item_or_none.index,
                        delta=event.arguments,
                    )
                )
        elif isinstance(event, Usage):
            self.response["usage"] = usage_json(event)
        elif isinstance(event, Completed):
            reason = _INCOMPLETE_REASONS.get(event.finish_reason)
            self._close(out, "incomplete" if reason else "completed")
            if reason:
                self.response["status"] = "incomplete"
                self.response["incomplete_details"] = {"reason": reason}
                out.append(self._event("response.incomplete", response=self._snapshot()))
            else:
                self.response["status"] = "completed"
                self.response["completed_at"] = int(time.time())
                out.append(self._event("response.completed", response=self._snapshot()))
        elif isinstance(event, Failed):
            self.failure = event.error
            self._close(out, "incomplete")
            error = error_object(event.error)
            out.append(self._event("error", error=error))
            self.response["status"] = "failed"
            self.response["error"] = {
                "code": event.error.code or event.error.type,
                "message": event.error.message,
            }
            out.append(self._event("response.failed", response=self._snapshot()))
        return out if self._stream else []

    def cancel(self, usage: Usage | None) -> list[Json]:
        """End the response as cancelled: the open item is finished ``incomplete``, the
        output so far is kept, ``usage`` is what was billed; then ``response.failed``
        (the stream's terminal event for a cancelled response, as OpenAI sends it)."""
        out: list[Json] = []
        self._close(out, "incomplete")
        self.response["status"] = "cancelled"
        if usage is not None:
            self.response["usage"] = usage_json(usage)
        out.append(self._event("response.failed", response=self._snapshot()))
        return out if self._stream else []

    def _item(self, kind: str, out: list[Json]) -> OutputItem:
        if self._open is not None and self._open.kind == kind:
            return self._open
        self._close(out, "completed")
        return self._add(kind, out)

    def _add(self, kind: str, out: list[Json], call_id: str = "", name: str = "") -> OutputItem:
        index = len(self._items)
        item = OutputItem(
            kind,
            item_id(kind, self.response_id, str(index)),
            index,
            call_id,
            name,
            summary=kind == "reasoning" and self._reasoning == "summary",
        )
        if call_id:
            self._calls[call_id] = item
        self._items.append(item)
        self._open = item
        out.append(
            self._event(
                "response.output_item.added", output_index=index, item=item.json("in_progress")
            )
        )
        if kind == "message":
            out.append(self._part_event("response.content_part.added", item, output_text("")))
        elif item.summary:
            part = reasoning_part(True, "")
            out.append(self._summary_event("response.reasoning_summary_part.added", item, part))
        elif kind == "reasoning":
            out.append(
                self._part_event("response.content_part.added", item, reasoning_part(False, ""))
            )
        return item

    def _close(self, out: list[Json], status: str) -> None:
        """Finish the open item, then announce and finish any held calls."""
        item, self._open = self._open, None
        if item is not None:
            self._finish(item, out, status)
        held, self._pending = self._pending, []
        for call in held:
            item = self._add("function_call", out, call_id=call.call_id, name=call.name)
            if call.text:
                item.text = call.text
                out.append(
                    self._item_event(
                        "response.function_call_arguments.delta",
                        item,
                        delta="".join(call.text),
                    )
                )
            self._open = None
            self._finish(item, out, status)

    def _finish(self, item: OutputItem, out: list[Json], status: str) -> None:
        text = "".join(item.text)
        if item.kind == "message":
            out.append(
                self._item_event(
                    "response.output_text.done",
                    item,
                    content_index=0,
                    text=text,
                    logprobs=[],
                )
            )
            out.append(self._part_event("response.content_part.done", item, output_text(text)))
        elif item.summary:
            out.append(
                self._item_event(
                    "response.reasoning_summary_text.done",
                    item,
                    summary_index=0,
                    text=text,
                )
            )
            part = reasoning_part(True, text)
            out.append(self._summary_event("response.reasoning_summary_part.done", item, part))
        elif item.kind == "reasoning":
            out.append(
                self._item_event(
                    REASONING_DONE[self._reasoning],
                    item,
                    content_index=0,
                    text=text,
                )
            )
            part = reasoning_part(False, text)
            out.append(self._part_event("response.content_part.done", item, part))
        else:
            out.append(
                self._item_event(
                    "response.function_call_arguments.done",
                    item,
                    arguments=text,
                )
            )
        done = item.json(status)
        self.response["output"].append(done)
        out.append(self._event("response.output_item.done", output_index=item.index, item=done))

    def _part_event(self, kind: str, item: OutputItem, part: Json) -> Json:
        return self._item_event(kind, item, content_index=0, part=part)

    def _summary_event(self, kind: str, item: OutputItem, part: Json) -> Json:
        return self._item_event(kind, item, summary_index=0, part=part)

    def _item_event(self, kind: str, item: OutputItem, **fields: Any) -> Json:
        """An event about one output item: its id and index, then ``fields``."""
        return self._event(kind, item_id=item.id, output_index=item.index, **fields)

    def _event(self, kind: str, **fields: Any) -> Json:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def _snapshot(self) -> Json:
        return {**self.response, "output": list(self.response["output"])}


def frames(events: list[Json]) -> bytes:
    """SSE frames for stream events: ``event: <type>`` then one line of JSON."""
    return b"".join(sse.event_frame(e["type"], orjson.dumps(e)) for e in events)
