"""The Open Responses wire format, upstream side.

``responses_body`` turns an invocation into a streamed ``POST /responses``
body; ``EventParser`` turns the upstream's semantic events into canonical
events. Kept apart from the HTTP code so that it can be tested frame by frame.

What the parser accepts, beyond the specification's happy path:

- reasoning as ``response.reasoning.delta`` (the spec, LibreChat),
  ``response.reasoning_text.delta`` (OpenAI) or
  ``response.reasoning_summary_text.delta`` (summaries);
- function-call arguments that arrive only in ``function_call_arguments.done``,
  ``output_item.done`` or the final response object (LibreChat may never send
  the ``.done`` events, some servers send no deltas): the part not yet passed
  on is emitted once;
- an answer whose text arrives only in the final response object;
- vendor events (``librechat:attachment``, anything with a ``slug:`` prefix)
  and unknown events, which are ignored;
- a stream that ends without ``response.completed``, ``response.incomplete``
  or ``response.failed``, which counts as failed (LibreChat ends a run that
  failed mid-stream with a bare ``[DONE]``).

With ``hold_tool_calls`` (an upstream that runs some function calls itself, as
LibreChat's agents do) function calls are held until the response ends, and only
the client's reach it: a call to a tool the client declared (``client_tools``)
for which the upstream reported no ``function_call_output``. LibreChat reports
no output for the tools it ran (its ``api/server/controllers/agents/
responses.js`` replaces the handler that would send one), so a call to a tool
the client never declared is the upstream's own, never the client's to execute.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from gateway.plugin import (
    AgentInvocation,
    Completed,
    Event,
    FinishReason,
    ForcedFunction,
    GatewayError,
    InvalidRequest,
    RateLimited,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    UpstreamError,
    Usage,
    item_json,
    text_delta,
)

Json = dict[str, Any]

REASONING_DELTAS = frozenset(
    {
        "response.reasoning.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
    }
)
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_INCOMPLETE: dict[str, FinishReason] = {
    "max_output_tokens": "length",
    "content_filter": "content_filter",
}


def responses_body(invocation: AgentInvocation, model: str) -> Json:
    """The streamed ``POST /responses`` request for ``invocation``.

    ``store`` is always false: the gateway keeps conversation state itself
    (``previous_response_id`` is resolved into ``input`` before a backend is
    called). Chat-only fields without a Responses counterpart (``seed``,
    ``stop``, ``user``) are not sent.
    """
    body: Json = {
        "model": model,
        "input": [item_json(item) for item in invocation.input],
        "store": False,
        "stream": True,
    }
    if invocation.instructions:
        body["instructions"] = invocation.instructions
    if invocation.tools:
        body["tools"] = [
            {"type": "function", "name": t.name}
            | {
                k: v
                for k, v in (
                    ("description", t.description),
                    ("parameters", t.parameters),
                    ("strict", t.strict),
                )
                if v is not None
            }
            for t in invocation.tools
        ]
        if invocation.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = invocation.parallel_tool_calls
    choice = invocation.tool_choice
    if isinstance(choice, ForcedFunction):
        body["tool_choice"] = {"type": "function", "name": choice.name}
    elif choice is not None:
        body["tool_choice"] = choice
    s = invocation.sampling
    optional: Json = {
        "temperature": s.temperature,
        "top_p": s.top_p,
        "presence_penalty": s.presence_penalty,
        "frequency_penalty": s.frequency_penalty,
        "max_output_tokens": invocation.max_output_tokens,
        "max_tool_calls": invocation.max_tool_calls,
        "service_tier": invocation.service_tier,
        "prompt_cache_key": invocation.prompt_cache_key,
        "safety_identifier": invocation.safety_identifier,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    text: Json = {}
    fmt = invocation.response_format
    if fmt is not None and fmt.type == "json_schema":
        spec = {
            "name": fmt.name,
            "description": fmt.description,
            "schema": fmt.schema,
            "strict": fmt.strict,
        }
        text["format"] = {"type": "json_schema"} | {k: v for k, v in spec.items() if v is not None}
    elif fmt is not None:
        text["format"] = {"type": fmt.type}
    if invocation.text_verbosity:
        text["verbosity"] = invocation.text_verbosity
    if text:
        body["text"] = text
    reasoning = {"effort": invocation.reasoning_effort, "summary": invocation.reasoning_summary}
    if any(v is not None for v in reasoning.values()):
        body["reasoning"] = {k: v for k, v in reasoning.items() if v is not None}
    if invocation.include:
        body["include"] = list(invocation.include)
    if invocation.metadata:
        body["metadata"] = dict(invocation.metadata)
    return body


def usage_from(raw: Mapping[str, Any]) -> Usage:
    """A response object's ``usage`` as canonical counts."""
    input_details = raw.get("input_tokens_details")
    output_details = raw.get("output_tokens_details")
    return Usage(
        input_tokens=_int(raw.get("input_tokens")),
        output_tokens=_int(raw.get("output_tokens")),
        cached_input_tokens=_int(_get(input_details, "cached_tokens")),
        reasoning_tokens=_int(_get(output_details, "reasoning_tokens")),
    )


def error_from(raw: object, default: str = "the upstream failed") -> GatewayError:
    """The error to report for an ``error`` event's payload or a failed response's ``error``.

    The spec nests the payload (``{"error": {type, code, message}}``); OpenAI's
    event is flat. A request the upstream rejects mid-stream (before any
    content, the client gets it as an HTTP error) keeps its meaning: invalid
    -> 400, rate limited -> 429; anything else is a 502.
    """
    error = raw.get("error") if isinstance(raw, Mapping) else None
    if not isinstance(error, Mapping):
        error = raw if isinstance(raw, Mapping) else {}
    message = error.get("message")
    text = message if isinstance(message, str) and message else default
    kind = f"{error.get('type') or ''} {error.get('code') or ''}"
    detail = f"The upstream failed: {text}"
    if "invalid_request" in kind:
        return InvalidRequest(detail, code="upstream_rejected_request")
    if "rate_limit" in kind or "too_many_requests" in kind:
        return RateLimited(detail)
    return UpstreamError(detail)


def _get(raw: object, key: str) -> object:
    return raw.get(key) if isinstance(raw, Mapping) else None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


class _Call:
    """One function call of the upstream's answer."""

    __slots__ = ("arguments", "call_id", "name", "started")

    def __init__(self, call_id: str, name: str) -> None:
        self.call_id = call_id
        self.name = name
        self.arguments = ""  # what the client has been sent (or, held, what arrived)
        self.started = False


class EventParser:
    """Feed ``(type, data)`` of each upstream event in order; then ``finish``."""

    def __init__(
        self, *, hold_tool_calls: bool = False, client_tools: frozenset[str] | None = None
    ) -> None:
        self.hold_tool_calls = hold_tool_calls
        self.client_tools = client_tools  # held calls to other names are the upstream's
        self._calls: dict[str, _Call] = {}  # by call_id, in order of arrival
        self._item_calls: dict[str, str] = {}  # item id -> call_id
        self._index_calls: dict[int, str] = {}  # output_index -> call_id
        self._ran: set[str] = set()  # call_ids the upstream reported an output for
        self._text_seen = False
        self.terminal: str | None = None  # the lifecycle event that ended the response

    def feed(self, kind: str, data: Mapping[str, Any]) -> Iterator[Event]:
        """The canonical events for one upstream event (``kind`` is its ``type``)."""
        if self.terminal is not None or ":" in kind:  # after the end, or a vendor event
            return
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            delta = _str(data.get("delta"))
            if delta:
                self._text_seen = True
                yield text_delta(delta)
        elif kind in REASONING_DELTAS:
            delta = _str(data.get("delta"))
            if delta:
                yield ReasoningDelta(delta)
        elif kind == "response.output_item.added":
            yield from self._item(data.get("item"), data.get("output_index"), done=False)
        elif kind == "response.output_item.done":
            yield from self._item(data.get("item"), data.get("output_index"), done=True)
        elif kind == "response.function_call_arguments.delta":
            call = self._call_of(data)
            if call is not None:
                yield from self._arguments(call, call.arguments + _str(data.get("delta")))
        elif kind == "response.function_call_arguments.done":
            call = self._call_of(data)
            if call is not None:
                yield from self._arguments(call, _str(data.get("arguments")))
        elif kind == "error":
            raise error_from(data)
        elif kind in TERMINAL:
            yield from self._terminal(kind, data.get("response"))

    def finish(self) -> None:
        """Raise if the upstream never said how the response ended."""
        if self.terminal is None:
            raise UpstreamError(
                "The upstream stream ended before the response was complete "
                "(no response.completed)."
            )

    def response(self, response: Mapping[str, Any]) -> Iterator[Event]:
        """The events of a whole (non-streamed) response object."""
        status = response.get("status")
        kind = {"incomplete": "response.incomplete", "failed": "response.failed"}.get(
            _str(status), "response.completed"
        )
        yield from self.feed(kind, {"type": kind, "response": response})

    # Function calls

    def _item(self, raw: object, index: object, *, done: bool) -> Iterator[Event]:
        if not isinstance(raw, Mapping):
            return
        kind = raw.get("type")
        if kind == "function_call_output":
            self._ran.add(_str(raw.get("call_id")))
            return
        if kind != "function_call":
            return
        call_id = _str(raw.get("call_id")) or _str(raw.get("id"))
        if not call_id:
            raise UpstreamError("The upstream sent a function call without a call_id.")
        call = self._calls.get(call_id)
        if call is None:
            call = self._calls[call_id] = _Call(call_id, _str(raw.get("name")))
        item = _str(raw.get("id"))
        if item:
            self._item_calls[item] = call_id
        if isinstance(index, int):
            self._index_calls[index] = call_id
        if not call.name:
            call.name = _str(raw.get("name"))
        yield from self._start(call)
        arguments = _str(raw.get("arguments"))
        if done or arguments:
            yield from self._arguments(call, arguments)

    def _call_of(self, data: Mapping[str, Any]) -> _Call | None:
        call_id = self._item_calls.get(_str(data.get("item_id")))
        if call_id is None:
            index = data.get("output_index")
            call_id = self._index_calls.get(index) if isinstance(index, int) else None
        if call_id is None:
            call_id = _str(data.get("call_id"))  # LibreChat adds it
        return self._calls.get(call_id)

    def _start(self, call: _Call) -> Iterator[Event]:
        if not call.started and not self.hold_tool_calls:
            call.started = True
            yield ToolCallStarted(call.call_id, call.name)

    def _arguments(self, call: _Call, arguments: str) -> Iterator[Event]:
        """Bring the call's arguments up to ``arguments``, sending only what is new."""
        if not arguments.startswith(call.arguments):
            return  # a summary that disagrees with the deltas: what was sent stands
        rest = arguments[len(call.arguments) :]
        if rest:
            call.arguments = arguments
            if not self.hold_tool_calls:
                yield ToolCallArgumentsDelta(call.call_id, rest)

    # The end

    def _terminal(self, kind: str, raw: object) -> Iterator[Event]:
        response: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        status = _str(response.get("status"))
        if kind == "response.failed" or status in ("failed", "cancelled"):
            raise error_from(response, f"the response {status or 'failed'}")
        output = response.get("output")
        for item in output if isinstance(output, list) else ():
            yield from self._final_item(item)
        if self.hold_tool_calls:
            for call in self._clients_calls():
                yield ToolCallStarted(call.call_id, call.name)
                if call.arguments:
                    yield ToolCallArgumentsDelta(call.call_id, call.arguments)
        usage = response.get("usage")
        if isinstance(usage, Mapping):
            yield usage_from(usage)
        self.terminal = kind
        yield Completed(self._finish_reason(kind, status, response))

    def _final_item(self, item: object) -> Iterator[Event]:
        """Whatever of an item of the final response the stream did not carry."""
        if not isinstance(item, Mapping):
            return
        if item.get("type") == "message" and not self._text_seen:
            content = item.get("content")
            for part in content if isinstance(content, list) else ():
                if isinstance(part, Mapping):
                    text = _str(part.get("text")) or _str(part.get("refusal"))
                    if text:
                        yield TextDelta(text)
        elif item.get("type") in ("function_call", "function_call_output"):
            yield from self._item(item, None, done=True)

    def _finish_reason(self, kind: str, status: str, response: Mapping[str, Any]) -> FinishReason:
        if kind == "response.incomplete" or status == "incomplete":
            reason = _str(_get(response.get("incomplete_details"), "reason"))
            return _INCOMPLETE.get(reason, "length")
        if self.hold_tool_calls:
            return "tool_calls" if self._clients_calls() else "stop"
        if any(call_id not in self._ran for call_id in self._calls):
            return "tool_calls"
        return "stop"

    def _clients_calls(self) -> list[_Call]:
        """The held calls that are the client's to execute."""
        known = self.client_tools
        return [
            call
            for call in self._calls.values()
            if call.call_id not in self._ran and (known is None or call.name in known)
        ]
