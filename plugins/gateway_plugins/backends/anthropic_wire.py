"""The Anthropic Messages wire format, upstream side.

``messages_body`` turns an invocation into a streamed ``POST /v1/messages``
body; ``EventParser`` turns the upstream's server-sent events into canonical
events. No HTTP here, so both are tested as pure functions.

Request mapping (what an operator should know):

- ``system``: the invocation's ``instructions``, then the text of every
  ``system``/``developer`` message wherever it stood, joined by a blank line
  (Anthropic has no mid-conversation system turn).
- ``messages`` alternate ``user``/``assistant``: consecutive items of one role
  are merged into one message, and a user message's ``tool_result`` blocks are
  moved before its other blocks, as Anthropic requires. Content is always a
  list of blocks; empty text parts are dropped (Anthropic rejects them).
- Images: a ``data:`` URL becomes a ``base64`` source, any other URL a ``url``
  source. Files: a PDF (``data:`` URL, bare base64, or URL) becomes a
  ``document`` block; a ``text/*`` ``data:`` URL becomes a plain-text
  document. File ids (OpenAI's Files API) cannot be resolved upstream: an
  ``InvalidRequest``.
- A ``FunctionCall`` becomes an assistant ``tool_use`` block whose ``input``
  is the parsed ``arguments``; arguments that are not a JSON object are an
  ``InvalidRequest`` (param ``input``): Anthropic only takes an object, and
  guessing would send the model a call it never made. A ``FunctionCallOutput``
  becomes a user ``tool_result`` block. ``Reasoning`` items are dropped: they
  carry no Anthropic signature, and Anthropic rejects unsigned thinking.
- ``max_tokens`` (required by Anthropic): the invocation's
  ``max_output_tokens``, else the route's, else the backend's
  ``default_max_tokens``.
- ``reasoning_effort`` -> ``thinking: {type: enabled, budget_tokens}``:
  minimal/low 1024, medium 4096, high 16384, xhigh 32768; ``none`` (or no
  effort) sends no ``thinking``; any other value is an ``InvalidRequest``.
  The budget is capped at ``max_tokens - 1``; below Anthropic's minimum of
  1024 thinking is left off. Thinking is also left off when the tool choice
  forces a tool (Anthropic refuses both together) and while a tool loop is
  open (the last assistant turn made tool calls: Anthropic would demand its
  signed thinking blocks back, which no canonical item carries). With
  thinking on, ``temperature`` and ``top_p`` are not sent (Anthropic only
  accepts their defaults then).
- Tools: ``{name, description, input_schema}``; a schema without a ``type``
  (or no schema) gets ``"type": "object"``, which Anthropic requires.
- ``tool_choice``: auto -> ``auto``, required -> ``any``, none -> ``none``,
  a forced function -> ``tool``; ``parallel_tool_calls: false`` adds
  ``disable_parallel_tool_use: true`` (to ``auto`` if no choice was given).
  Tools and choice are only sent when there are tools.
- ``stop`` -> ``stop_sequences``; ``metadata.user_id`` from ``user`` (else
  ``safety_identifier``). Not forwarded, having no Anthropic equivalent:
  ``seed``, penalties, ``response_format``, ``top_logprobs``, an OpenAI
  ``service_tier`` (Anthropic's ``auto`` and ``standard_only`` are, as is
  ``speed``), ``prompt_cache_key``, the client's ``metadata``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from gateway.plugin import (
    AgentInvocation,
    Completed,
    Event,
    Failed,
    FilePart,
    FinishReason,
    ForcedFunction,
    FunctionCall,
    FunctionCallOutput,
    ImagePart,
    InvalidRequest,
    Message,
    ReasoningDelta,
    TextDelta,
    TextPart,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    UpstreamError,
    Usage,
)

THINKING_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 1024,
    "medium": 4096,
    "high": 16384,
    "xhigh": 32768,
}
MIN_THINKING_BUDGET = 1024

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

INCOMPLETE = "The upstream stream ended before the answer was complete."


# The request


def messages_body(invocation: AgentInvocation, model: str, max_tokens: int) -> dict[str, Any]:
    """The streamed Messages API request for ``invocation``."""
    system, turns = _conversation(invocation)
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens}
    if system:
        body["system"] = system
    body["messages"] = turns
    if invocation.tools:
        body["tools"] = [
            {
                "name": t.name,
                **({"description": t.description} if t.description else {}),
                "input_schema": {"type": "object", **(t.parameters or {})},
            }
            for t in invocation.tools
        ]
        choice = _tool_choice(invocation)
        if choice is not None:
            body["tool_choice"] = choice
    thinking = _thinking(invocation, max_tokens, turns)
    if thinking is not None:
        body["thinking"] = thinking
    s = invocation.sampling
    if s.stop:
        body["stop_sequences"] = list(s.stop)
    if thinking is None:
        if s.temperature is not None:
            body["temperature"] = s.temperature
        if s.top_p is not None:
            body["top_p"] = s.top_p
    user = invocation.user or invocation.safety_identifier
    if user:
        body["metadata"] = {"user_id": user}
    # Only on a route that allows them (gateway.price_fields); OpenAI's tiers have no
    # Anthropic equivalent.
    if invocation.service_tier in ("auto", "standard_only"):
        body["service_tier"] = invocation.service_tier
    if invocation.speed is not None:
        body["speed"] = invocation.speed
    body["stream"] = True
    return body


def _tool_choice(invocation: AgentInvocation) -> dict[str, Any] | None:
    choice = invocation.tool_choice
    out: dict[str, Any]
    if isinstance(choice, ForcedFunction):
        out = {"type": "tool", "name": choice.name}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "auto" or invocation.parallel_tool_calls is False:
        out = {"type": "auto"}
    else:
        return None
    if invocation.parallel_tool_calls is False:
        out["disable_parallel_tool_use"] = True
    return out


def _thinking(
    invocation: AgentInvocation, max_tokens: int, turns: list[dict[str, Any]]
) -> dict[str, Any] | None:
    effort = invocation.reasoning_effort
    if effort is None or effort == "none":
        return None
    budget = THINKING_BUDGETS.get(effort)
    if budget is None:
        raise InvalidRequest(
            f"Unsupported reasoning effort {effort!r} for this agent; use one of "
            f"none, {', '.join(THINKING_BUDGETS)}.",
            param="reasoning_effort",
        )
    budget = min(budget, max_tokens - 1)
    if budget < MIN_THINKING_BUDGET:
        return None
    if isinstance(invocation.tool_choice, ForcedFunction) or invocation.tool_choice == "required":
        return None
    if _open_tool_loop(turns):
        return None
    return {"type": "enabled", "budget_tokens": budget}


def _open_tool_loop(turns: list[dict[str, Any]]) -> bool:
    """Whether the last assistant turn called tools (its results are what follows)."""
    for turn in reversed(turns):
        if turn["role"] == "assistant":
            return any(b["type"] == "tool_use" for b in turn["content"])
    return False


def _conversation(invocation: AgentInvocation) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = [invocation.instructions] if invocation.instructions else []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for item in invocation.input:
        if isinstance(item, Message):
            if item.role in ("system", "developer"):
                if item.text:
                    system.append(item.text)
            else:
                add(item.role, [_block(p, item.role) for p in item.content if _keep(p)])
        elif isinstance(item, FunctionCall):
            add(
                "assistant",
                [
                    {
                        "type": "tool_use",
                        "id": item.call_id,
                        "name": item.name,
                        "input": _arguments(item),
                    }
                ],
            )
        elif isinstance(item, FunctionCallOutput):
            add(
                "user",
                [{"type": "tool_result", "tool_use_id": item.call_id, "content": item.output}],
            )
        # Reasoning: dropped (no Anthropic signature to replay it with).
    for turn in turns:
        if turn["role"] == "user":  # tool results first, as Anthropic requires
            blocks = turn["content"]
            turn["content"] = [b for b in blocks if b["type"] == "tool_result"] + [
                b for b in blocks if b["type"] != "tool_result"
            ]
    if not turns:
        raise InvalidRequest(
            "The conversation needs at least one user or assistant message.", param="messages"
        )
    return "\n\n".join(system), turns


def _keep(part: object) -> bool:
    return not (isinstance(part, TextPart) and not part.text)


def _block(part: object, role: str) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if role == "assistant":
        raise InvalidRequest("Assistant messages may only carry text.", param="messages")
    if isinstance(part, ImagePart):
        if part.file_id is not None or not part.url:
            raise InvalidRequest(
                "File ids cannot be sent to this agent; send the image as a URL or data: URL.",
                param="image_url",
            )
        if part.url.startswith("data:"):
            media_type, data = _data_url(part.url)
            return {
                "type": "image",
                "source": {"type": "base64", "media_type": media_type, "data": data},
            }
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    if isinstance(part, FilePart):
        return _document(part)
    raise InvalidRequest("This content part cannot be sent to this agent.", param="messages")


def _document(part: FilePart) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "document"}
    if part.data:
        if part.data.startswith("data:"):
            media_type, data = _data_url(part.data)
        else:
            media_type, data = "application/pdf", part.data
        if media_type == "application/pdf":
            block["source"] = {"type": "base64", "media_type": media_type, "data": data}
        elif media_type.startswith("text/"):
            try:
                text = base64.b64decode(data, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidRequest(
                    "The file's data is not base64 of UTF-8 text.", param="file_data"
                ) from None
            block["source"] = {"type": "text", "media_type": "text/plain", "data": text}
        else:
            raise InvalidRequest(
                f"Files of type {media_type} cannot be sent to this agent; "
                "send a PDF or a text file.",
                param="file_data",
            )
    elif part.url:
        block["source"] = {"type": "url", "url": part.url}
    else:
        raise InvalidRequest(
            "File ids cannot be sent to this agent; send the file's data.", param="file_id"
        )
    if part.filename:
        block["title"] = part.filename
    return block


def _data_url(url: str) -> tuple[str, str]:
    """``(media type, base64 data)`` of a base64 ``data:`` URL."""
    header, sep, data = url[len("data:") :].partition(",")
    params = header.split(";")
    if not sep or "base64" not in params[1:] or not params[0]:
        raise InvalidRequest(
            "A data: URL must look like data:<media type>;base64,<data>.", param="url"
        )
    return params[0].lower(), data


def _arguments(call: FunctionCall) -> dict[str, Any]:
    if not call.arguments.strip():
        return {}
    try:
        value = orjson.loads(call.arguments)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"The arguments of function call '{call.call_id}' are not a JSON object.",
            param="input",
        )
    return value


# The stream


def usage_from(raw: Mapping[str, Any]) -> Usage:
    """Canonical usage of an Anthropic ``usage`` object (input counts every token read)."""
    fresh = _int(raw.get("input_tokens"))
    written = _int(raw.get("cache_creation_input_tokens"))
    read = _int(raw.get("cache_read_input_tokens"))
    return Usage(
        input_tokens=fresh + written + read,
        output_tokens=_int(raw.get("output_tokens")),
        cached_input_tokens=read,
        cache_write_tokens=written,
    )


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class _ToolBlock:
    __slots__ = ("call_id", "initial", "streamed")

    def __init__(self, call_id: str, initial: object) -> None:
        self.call_id = call_id
        self.initial = initial
        self.streamed = False


def message_as_events(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A whole (non-streamed) ``message`` as the stream that would have carried it.

    Each block is one ``content_block_start`` holding all of it (the parser
    reads a start's text, thinking and tool input) and its stop; an ``error``
    object stays itself, which the parser raises.
    """
    if message.get("type") == "error":
        return [message]
    blocks = message.get("content")
    if message.get("type") != "message" or not isinstance(blocks, list):
        raise UpstreamError("The upstream sent a malformed message.")
    events: list[Mapping[str, Any]] = [
        {"type": "message_start", "message": {**message, "content": []}}
    ]
    for index, block in enumerate(blocks):
        events.append({"type": "content_block_start", "index": index, "content_block": block})
        events.append({"type": "content_block_stop", "index": index})
    delta = {k: message.get(k) for k in ("stop_reason", "stop_sequence")}
    events.append({"type": "message_delta", "delta": delta, "usage": {}})
    events.append({"type": "message_stop"})
    return events


class EventParser:
    """Feed the upstream's events in order; ``finish`` closes the stream.

    ``feed`` yields ``Usage`` then ``Completed`` at ``message_stop`` and sets
    ``done``; the caller stops reading then. An ``error`` event raises
    ``UpstreamError``. ``ping``, unknown events and unknown block types
    (redacted thinking, server tools) are ignored.
    """

    def __init__(self) -> None:
        self.done = False
        self._usage: dict[str, Any] = {}
        self._finish: FinishReason = "stop"
        self._stop_sequence: str | None = None
        self._tools: dict[int, _ToolBlock] = {}  # content block index -> its tool call
        self._tool_count = 0

    def feed(self, data: Mapping[str, Any]) -> Iterator[Event]:
        kind = data.get("type")
        if kind == "content_block_delta":
            yield from self._delta(data)
        elif kind == "content_block_start":
            yield from self._start(data)
        elif kind == "content_block_stop":
            yield from self._stop(data)
        elif kind == "message_start":
            message = data.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):
                self._usage.update(usage)
        elif kind == "message_delta":
            delta = data.get("delta")
            reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            if isinstance(reason, str) and reason:
                self._finish = _FINISH.get(reason, "stop")
            matched = delta.get("stop_sequence") if isinstance(delta, dict) else None
            if isinstance(matched, str):
                self._stop_sequence = matched
            usage = data.get("usage")
            if isinstance(usage, dict):  # cumulative: later counts replace earlier ones
                self._usage.update({k: v for k, v in usage.items() if v is not None})
        elif kind == "message_stop":
            self.done = True
            yield usage_from(self._usage)
            yield Completed(self._finish, self._stop_sequence)
        elif kind == "error":
            error = data.get("error")
            if isinstance(error, dict):
                message = f"{error.get('type', 'error')}: {error.get('message', '')}"
            else:
                message = str(error)
            raise UpstreamError(f"The upstream failed mid-stream: {message}")

    def feed_all(self, events: list[Mapping[str, Any]]) -> Iterator[Event]:
        for data in events:
            yield from self.feed(data)

    def _index(self, data: Mapping[str, Any]) -> int:
        index = data.get("index")
        if not isinstance(index, int):
            raise UpstreamError("The upstream sent a content block event without an index.")
        return index

    def _start(self, data: Mapping[str, Any]) -> Iterator[Event]:
        index = self._index(data)
        block = data.get("content_block")
        if not isinstance(block, dict):
            raise UpstreamError("The upstream sent a malformed content block.")
        kind = block.get("type")
        if kind == "text":
            if isinstance(block.get("text"), str) and block["text"]:
                yield TextDelta(block["text"])
        elif kind == "thinking":
            if isinstance(block.get("thinking"), str) and block["thinking"]:
                yield ReasoningDelta(block["thinking"])
        elif kind == "tool_use":
            call_id = block.get("id")
            if not isinstance(call_id, str) or not call_id:
                call_id = f"toolu_gateway_{self._tool_count}"
            self._tool_count += 1
            name = block.get("name")
            self._tools[index] = _ToolBlock(call_id, block.get("input"))
            yield ToolCallStarted(call_id, name if isinstance(name, str) else "")

    def _delta(self, data: Mapping[str, Any]) -> Iterator[Event]:
        delta = data.get("delta")
        if not isinstance(delta, dict):
            raise UpstreamError("The upstream sent a malformed content block delta.")
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if isinstance(text, str) and text:
                yield TextDelta(text)
        elif kind == "thinking_delta":
            text = delta.get("thinking")
            if isinstance(text, str) and text:
                yield ReasoningDelta(text)
        elif kind == "input_json_delta":
            tool = self._tools.get(self._index(data))
            if tool is None:
                raise UpstreamError("The upstream sent tool input outside a tool_use block.")
            partial = delta.get("partial_json")
            if isinstance(partial, str) and partial:
                tool.streamed = True
                yield ToolCallArgumentsDelta(tool.call_id, partial)
        # signature_delta, citations_delta...: nothing canonical to say

    def _stop(self, data: Mapping[str, Any]) -> Iterator[Event]:
        tool = self._tools.pop(self._index(data), None)
        if tool is not None and not tool.streamed:
            initial = tool.initial if isinstance(tool.initial, dict) else {}
            yield ToolCallArgumentsDelta(tool.call_id, orjson.dumps(initial).decode())

    def finish(self) -> Iterator[Event]:
        """After the upstream's last event: ``Failed`` unless ``message_stop`` came."""
        if not self.done:
            yield Failed(UpstreamError(INCOMPLETE))
