"""The OpenAI Chat Completions wire format, upstream side.

``chat_body`` turns an invocation into a request body; ``ChunkParser`` turns
the upstream's streamed chunks into canonical events. Kept apart from the HTTP
code so that other OpenAI-compatible backends (LibreChat, for one) can reuse
them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

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
    ServerSentEvent,
    TextDelta,
    TextPart,
    TokenLogprob,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    TopLogprob,
    UpstreamError,
    Usage,
    maker,
    text_delta,
)
from gateway_plugins.backends.http import json_object

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


MAX_TOKENS_FIELDS = ("max_completion_tokens", "max_tokens")


def chat_body(
    invocation: AgentInvocation, model: str, max_tokens_field: str = "max_completion_tokens"
) -> dict[str, Any]:
    """The streamed Chat Completions request for ``invocation`` (usage always requested).

    The output cap goes in ``max_tokens_field``: ``max_completion_tokens``, what
    OpenAI documents and its reasoning models require (they refuse
    ``max_tokens``), and what vLLM and LiteLLM take too; ``max_tokens`` for
    servers that know only that one (Ollama's OpenAI API ignores the other).
    """
    body: dict[str, Any] = {
        "model": model,
        "messages": messages(invocation),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if invocation.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    k: v
                    for k, v in (
                        ("name", t.name),
                        ("description", t.description),
                        ("parameters", t.parameters),
                        ("strict", t.strict),
                    )
                    if v is not None
                },
            }
            for t in invocation.tools
        ]
    choice = invocation.tool_choice
    if isinstance(choice, ForcedFunction):
        body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif choice is not None:
        body["tool_choice"] = choice
    # The optional fields, each sent only when set, in this order (a test holds it).
    # One test a field, not a dict of all fifteen filtered (most requests set none).
    if invocation.tools and invocation.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = invocation.parallel_tool_calls
    s = invocation.sampling
    if s.temperature is not None:
        body["temperature"] = s.temperature
    if s.top_p is not None:
        body["top_p"] = s.top_p
    if s.presence_penalty is not None:
        body["presence_penalty"] = s.presence_penalty
    if s.frequency_penalty is not None:
        body["frequency_penalty"] = s.frequency_penalty
    if s.seed is not None:
        body["seed"] = s.seed
    if s.stop:
        body["stop"] = list(s.stop)
    if invocation.max_output_tokens is not None:
        body[max_tokens_field] = invocation.max_output_tokens
    if invocation.reasoning_effort is not None:
        body["reasoning_effort"] = invocation.reasoning_effort
    if invocation.logprobs:
        body["logprobs"] = True
        if invocation.top_logprobs is not None:
            body["top_logprobs"] = invocation.top_logprobs
    # Sent only when the client set them; OpenAI-compatible servers ignore what they lack.
    if invocation.service_tier is not None:
        body["service_tier"] = invocation.service_tier
    if invocation.safety_identifier is not None:
        body["safety_identifier"] = invocation.safety_identifier
    if invocation.prompt_cache_key is not None:
        body["prompt_cache_key"] = invocation.prompt_cache_key
    if invocation.user is not None:
        body["user"] = invocation.user
    fmt = invocation.response_format
    if fmt is not None and fmt.type == "json_schema":
        spec = {"name": fmt.name, "schema": fmt.schema, "strict": fmt.strict}
        if fmt.description:
            spec["description"] = fmt.description
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {k: v for k, v in spec.items() if v is not None},
        }
    elif fmt is not None:
        body["response_format"] = {"type": fmt.type}
    return body


def messages(invocation: AgentInvocation) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if invocation.instructions:
        out.append({"role": "system", "content": invocation.instructions})
    for item in invocation.input:
        if isinstance(item, Message):
            out.append({"role": item.role, "content": _content(item)})
        elif isinstance(item, FunctionCall):
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutput):
            out.append({"role": "tool", "tool_call_id": item.call_id, "content": item.output})
    return out


def _content(message: Message) -> str | list[dict[str, Any]]:
    content = message.content
    if len(content) == 1 and type(content[0]) is TextPart:  # most messages: one text
        return content[0].text
    if all(isinstance(p, TextPart) for p in content):
        return message.text
    parts: list[dict[str, Any]] = []
    for p in message.content:
        if isinstance(p, TextPart):
            parts.append({"type": "text", "text": p.text})
        elif isinstance(p, ImagePart):
            image = {"url": p.url} if p.detail is None else {"url": p.url, "detail": p.detail}
            parts.append({"type": "image_url", "image_url": image})
        elif isinstance(p, FilePart):
            if p.url and not (p.data or p.file_id):
                raise InvalidRequest(
                    "Chat Completions upstreams take files as file_data or file_id, not file_url."
                )
            file = {"filename": p.filename, "file_data": p.data, "file_id": p.file_id}
            parts.append({"type": "file", "file": {k: v for k, v in file.items() if v}})
    return parts


_make_usage = maker(Usage)  # ``Usage(...)`` without the class's call (one an answer)


def usage_from(raw: Mapping[str, Any]) -> Usage:
    """A ``usage`` object as canonical counts; anything but a positive integer counts 0."""
    return _make_usage(
        input_tokens=_int(raw.get("prompt_tokens")),
        output_tokens=_int(raw.get("completion_tokens")),
        cached_input_tokens=_int(_get(raw.get("prompt_tokens_details"), "cached_tokens")),
        reasoning_tokens=_int(_get(raw.get("completion_tokens_details"), "reasoning_tokens")),
    )


def _get(raw: object, key: str) -> object:
    """``raw[key]`` of a details object, which an upstream may send as any JSON value.

    (Absent, or a ``dict``, as most are, told before ``isinstance`` against the
    ``Mapping`` ABC, a Python-level check of a few hundred instructions.)"""
    if raw is None:
        return None
    return raw.get(key) if type(raw) is dict or isinstance(raw, Mapping) else None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def completion_as_chunk(completion: Mapping[str, Any]) -> Mapping[str, Any]:
    """A non-streamed ``chat.completion`` as the one chunk that would stream all of it.

    Its message becomes the delta (tool calls without ``index``: each id starts
    a new call); ``finish_reason`` and ``usage`` carry over.
    """
    choices = completion.get("choices")
    if "error" in completion or not isinstance(choices, list) or not choices:
        return completion
    choice = choices[0]
    if not isinstance(choice, dict):
        raise UpstreamError("The upstream sent a malformed answer.")
    chunk = {
        "choices": [
            {
                "delta": choice.get("message"),
                "logprobs": choice.get("logprobs"),
                "finish_reason": choice.get("finish_reason"),
            }
        ]
    }
    if "usage" in completion:
        chunk["usage"] = completion["usage"]
    return chunk


def logprobs_from(raw: object) -> tuple[TokenLogprob, ...] | None:
    """A choice's ``logprobs.content``, checked; ``None`` if it carries none."""
    content = raw.get("content") if isinstance(raw, dict) else None
    if content is None:
        return None
    if not isinstance(content, list):
        raise UpstreamError("The upstream sent malformed logprobs.")
    return tuple(_token_logprob(t) for t in content)


def _token_logprob(raw: object) -> TokenLogprob:
    if not isinstance(raw, dict):
        raise UpstreamError("The upstream sent malformed logprobs.")
    top = raw.get("top_logprobs") or ()
    if not isinstance(top, list | tuple):
        raise UpstreamError("The upstream sent malformed logprobs.")
    return TokenLogprob(*_token(raw), top_logprobs=tuple(TopLogprob(*_token(t)) for t in top))


def _token(raw: object) -> tuple[str, float, tuple[int, ...] | None]:
    if not isinstance(raw, dict):
        raise UpstreamError("The upstream sent malformed logprobs.")
    token, logprob, data = raw.get("token"), raw.get("logprob"), raw.get("bytes")
    if (
        not isinstance(token, str)
        or not isinstance(logprob, int | float)
        or isinstance(logprob, bool)
        or not (data is None or (isinstance(data, list) and all(type(b) is int for b in data)))
    ):
        raise UpstreamError("The upstream sent malformed logprobs.")
    return token, float(logprob), None if data is None else tuple(data)


SHAPE_TRIES = 3  # chunks a stream may learn a text shape from (see ``ChunkParser.feed_data``)
_PROBE = "gateway-shape-probe"


class ChunkParser:
    """Feed chunks in order (parsed, or as their SSE data); ``finish`` yields the closing events."""

    def __init__(self, call_id_prefix: str = "call_") -> None:
        self._calls: dict[int, str] = {}  # upstream tool-call index -> call id
        self._prefix = call_id_prefix
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self._shape: tuple[str, str] | None = None  # a text chunk's data before and after its text
        self._tries = SHAPE_TRIES

    def feed_data(self, data: str) -> list[Event]:
        """The events of one chunk given as its SSE data.

        Most chunks of a stream are one text delta each, alike but for the text
        (same id, model, fields, field order). Once a chunk has shown that shape,
        a chunk of the same shape whose text needs no JSON escaping is read by
        slicing, without parsing its JSON: what ``feed`` would make of it, exactly.
        """
        shape = self._shape
        if shape is not None:
            head, tail = shape
            end = len(data) - len(tail)
            if end >= len(head) and data.startswith(head) and data.endswith(tail):
                text = data[len(head) : end]
                if _plain(text):
                    return [text_delta(text)] if text else []
        chunk = json_object(data)
        events = self.feed(chunk)
        if self._tries and len(events) == 1 and type(events[0]) is TextDelta:
            self._tries -= 1
            self._shape = _text_shape(data, chunk, events[0])
        return events

    def feed_frames(self, frames: list[ServerSentEvent], events: list[Event]) -> bool:
        """``feed_texts`` for a read's frames: the data of its message events, up to
        ``[DONE]`` (a named event is not a chunk: LibreChat's own)."""
        return self.feed_texts(
            [f.data for f in frames if f.event == "message" or f.data == "[DONE]"], events
        )

    def feed_texts(self, texts: list[str], events: list[Event]) -> bool:
        """``feed_data`` for the chunks of one read (each its SSE data), their events
        added to ``events`` up to ``[DONE]``; whether ``[DONE]`` came. A chunk that fails
        raises, and the events of the chunks before it are in ``events``.

        ``feed_data``'s common case (a text chunk of the known shape) inline, without
        a call and a list of its own per chunk."""
        append, feed = events.append, self.feed_data
        shape = self._shape
        if shape is not None:
            head, tail = shape
            start, tail_length = len(head), len(tail)
        for data in texts:
            if shape is not None:
                end = len(data) - tail_length
                if end >= start and data.startswith(head) and data.endswith(tail):
                    text = data[start:end]
                    if text.isprintable() and '"' not in text and "\\" not in text:  # _plain
                        if text:
                            append(text_delta(text))
                        continue
            if data == "[DONE]":
                return True
            events.extend(feed(data))
            if shape is not self._shape:  # learnt from this chunk
                shape = self._shape
                if shape is not None:
                    head, tail = shape
                    start, tail_length = len(head), len(tail)
        return False

    def feed(self, chunk: Mapping[str, Any]) -> list[Event]:
        """The events of one chunk (a list: this runs for every chunk of every stream)."""
        error = chunk.get("error")
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise UpstreamError(f"The upstream failed mid-stream: {message}")
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage_from(usage)
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return []
        choice = choices[0]
        if not isinstance(choice, dict):
            raise UpstreamError("The upstream sent a malformed chunk.")
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise UpstreamError("The upstream sent a malformed chunk.")
        events: list[Event] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            events.append(ReasoningDelta(reasoning))
        content = delta.get("content")
        if isinstance(content, str) and content:
            logprobs = choice.get("logprobs")
            if logprobs is None:
                events.append(text_delta(content))
            else:
                events.append(TextDelta(content, logprobs_from(logprobs)))
        for call in delta.get("tool_calls") or ():
            events.extend(self._tool_call(call))
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:  # some servers send "" for "not yet"
            self.finish_reason = _FINISH.get(reason, "stop")
        return events

    def _tool_call(self, call: object) -> Iterator[Event]:
        if not isinstance(call, dict):
            raise UpstreamError("The upstream sent a malformed tool call.")
        given = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
        index = call.get("index")
        if not isinstance(index, int):  # some servers omit it: a new id starts a new call
            ids = list(self._calls.values())
            index = ids.index(given) if given in ids else len(ids) - (given is None and bool(ids))
        fn = call.get("function") or {}
        call_id = self._calls.get(index)
        if call_id is None:
            call_id = given or f"{self._prefix}{index}"
            self._calls[index] = call_id
            name = fn.get("name") if isinstance(fn, dict) else None
            yield ToolCallStarted(call_id, name if isinstance(name, str) else "")
        arguments = fn.get("arguments") if isinstance(fn, dict) else None
        if isinstance(arguments, str) and arguments:
            yield ToolCallArgumentsDelta(call_id, arguments)

    def finish(self, *, done: bool) -> Iterator[Event]:
        """Close the stream; ``done`` is whether the upstream sent ``[DONE]``."""
        if self.usage is not None:
            yield self.usage
        if self.finish_reason is None and not done:
            yield Failed(UpstreamError("The upstream stream ended before the answer was complete."))
            return
        yield Completed(self.finish_reason or "stop")


def _plain(text: str) -> bool:
    """Whether ``text`` stands for itself inside a JSON string (no quote, escape, or control)."""
    return text.isprintable() and '"' not in text and "\\" not in text


def _text_shape(data: str, chunk: Mapping[str, Any], event: TextDelta) -> tuple[str, str] | None:
    """``data`` around the text of ``event``, if any chunk of that shape is one text delta
    and nothing else. ``chunk`` is ``data`` parsed, and ``event`` the one event ``feed``
    made of it.

    That is: ``chunk`` is such a delta (its one event carries no logprobs; it has no
    usage, finish reason or tool calls), and ``data`` with a marker for its text parses
    to ``chunk`` with the marker as its content (so the text written there is the
    content's, not another field's, nor an escaped form of it). What a fresh parser's
    ``feed`` of the marked data showed until round eleven (one ``TextDelta`` of the
    marker, no usage, no finish reason), without the second parser and its events:
    a test holds the two to the same answer.
    """
    text = event.text
    quoted = f'"{text}"'
    if event.logprobs is not None or not _plain(text) or data.count(quoted) != 1:
        return None
    if _PROBE in data or isinstance(chunk.get("usage"), dict):
        return None
    # ``feed`` made one text delta of ``chunk``: its first choice and delta are objects.
    choice = chunk["choices"][0]
    reason = choice.get("finish_reason")
    if (isinstance(reason, str) and reason) or choice["delta"].get("tool_calls"):
        return None
    start = data.index(quoted) + 1
    head, tail = data[:start], data[start + len(text) :]
    try:
        marked = json_object(head + _PROBE + tail)
    except UpstreamError:
        return None
    choices = marked.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    delta = choices[0].get("delta")
    if not isinstance(delta, dict) or delta.get("content") != _PROBE:
        return None
    delta["content"] = text  # ``marked`` is this function's own
    return (head, tail) if marked == chunk else None
