"""The A2A 1.0 JSON-RPC wire of the ``a2a`` backend: the message it sends, and the
stream responses it reads back as canonical events.

The invocation becomes one ``SendStreamingMessage``: the last user message's parts
(text, images and files by URL or inline), any function results after it as data
parts (``{"functionCallOutput": ...}``), and, when the conversation has more (the
gateway's context, instructions), a first text part with that transcript, since an
A2A agent keeps its own context and is told only the new message.

What comes back: a ``message`` (the agent answered at once) or a task's updates;
the text of ``artifactUpdate`` parts as it comes (and a final task's or status
message's text when no artifact carried any); ``COMPLETED`` (and ``INPUT_REQUIRED``,
``AUTH_REQUIRED``: the turn is over) end the answer, ``FAILED``, ``REJECTED`` and
``CANCELED`` fail it with the agent's own words. A2A reports no token usage: an
agent that puts ``usage`` (``inputTokens``, ``outputTokens``) in a status's or
task's metadata is billed by it; otherwise the gateway estimates (flagged).
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.plugin import (
    AgentInvocation,
    Completed,
    Event,
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

Json = dict[str, Any]
DONE = ("TASK_STATE_COMPLETED", "TASK_STATE_INPUT_REQUIRED", "TASK_STATE_AUTH_REQUIRED")
FAILED = ("TASK_STATE_FAILED", "TASK_STATE_REJECTED", "TASK_STATE_CANCELED")
INVALID_PARAMS = (-32600, -32602, -32005)  # the request's fault, A2A says


def request_body(invocation: AgentInvocation, message_id: str, rpc_id: str) -> Json:
    """The JSON-RPC ``SendStreamingMessage`` request for ``invocation``."""
    items = invocation.input
    last = max((i for i, it in enumerate(items) if isinstance(it, Message)), default=-1)
    parts: list[Json] = []
    for item in items[last + 1 :]:
        if isinstance(item, FunctionCallOutput):
            output = {"callId": item.call_id, "output": item.output}
            parts.append({"data": {"functionCallOutput": output}})
    if last >= 0:
        message = items[last]
        assert isinstance(message, Message)
        parts = [_part(p) for p in message.content] + parts
    earlier = _transcript(invocation, items[:last] if last >= 0 else items)
    if earlier:
        parts.insert(0, {"text": earlier})
    if not parts:
        raise InvalidRequest("An A2A agent needs a message to answer.")
    return {
        "jsonrpc": "2.0",
        "id": rpc_id,
        "method": "SendStreamingMessage",
        "params": {
            "message": {"messageId": message_id, "role": "ROLE_USER", "parts": parts},
            "configuration": {"acceptedOutputModes": ["text/plain"]},
        },
    }


def _part(part: TextPart | ImagePart | FilePart) -> Json:
    if isinstance(part, TextPart):
        return {"text": part.text}
    if isinstance(part, ImagePart):
        return _file(part.url or part.file_id or "", None)
    return _file(part.url or part.data or part.file_id or "", part.filename)


def _file(ref: str, filename: str | None) -> Json:
    """A file by URL, or inline (a ``data:`` URL's base64 as ``raw``)."""
    named = {"filename": filename} if filename else {}
    if ref.startswith("data:") and ";base64," in ref:
        head, _, data = ref.partition(";base64,")
        return {"raw": data, "mediaType": head.removeprefix("data:"), **named}
    return {"url": ref, **named}


def _transcript(invocation: AgentInvocation, items: tuple[Any, ...]) -> str:
    lines = [f"[instructions] {invocation.instructions}"] if invocation.instructions else []
    for item in items:
        if isinstance(item, Message) and item.text:
            lines.append(f"[{item.role}] {item.text}")
        elif isinstance(item, FunctionCall):
            lines.append(f"[function call {item.name}] {item.arguments}")
        elif isinstance(item, FunctionCallOutput):
            lines.append(f"[function result] {item.output}")
    if not lines:
        return ""
    return "The conversation so far:\n" + "\n".join(lines) + "\n\nThe new message:"


class StreamParser:
    """The stream responses of one answer, read as canonical events."""

    def __init__(self) -> None:
        self.done = False
        self._texted = False  # an artifact carried text: a final message repeats it
        self._usage: Usage | None = None

    def feed_data(self, data: str) -> list[Event]:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError("The A2A agent sent an event that is not JSON.") from None
        if not isinstance(value, dict):
            raise UpstreamError("The A2A agent sent an event that is not a JSON object.")
        return self.feed(value)

    def feed(self, response: Json) -> list[Event]:
        """One JSON-RPC response: a stream response, or an error."""
        error = response.get("error")
        if error is not None:
            raise _rpc_error(error)
        result = response.get("result")
        if not isinstance(result, dict):
            raise UpstreamError("The A2A agent sent a JSON-RPC response without a result.")
        if isinstance(result.get("message"), dict):  # an answer without a task
            self.done = True
            return [*self._text(result["message"].get("parts")), *self._end()]
        if isinstance(result.get("artifactUpdate"), dict):
            artifact = result["artifactUpdate"].get("artifact") or {}
            chunk = self._text(artifact.get("parts"))
            self._texted = self._texted or bool(chunk)
            return chunk
        body = result.get("statusUpdate") or result.get("task")
        if not isinstance(body, dict):
            return []  # a kind this version does not know: skipped
        self._usage = _usage(body.get("metadata")) or self._usage
        status = body.get("status") or {}
        state = status.get("state")
        if state in FAILED:
            words = "".join(p.get("text", "") for p in _parts(status.get("message")))
            raise UpstreamError(f"The A2A agent's task ended {state}: {words or 'no reason'}")
        if state not in DONE:
            return []
        self.done = True
        events: list[Event] = []
        if not self._texted:  # the answer is in the final task, or its status message
            for artifact in body.get("artifacts") or []:
                events += self._text(artifact.get("parts"))
            if not events:
                events = self._text(_parts(status.get("message")))
        return [*events, *self._end()]

    def _text(self, parts: object) -> list[Event]:
        out: list[Event] = []
        for part in _parts(parts):
            if isinstance(part.get("text"), str) and part["text"]:
                out.append(TextDelta(part["text"]))
            elif "data" in part:
                out.append(TextDelta(orjson.dumps(part["data"]).decode()))
        return out

    def _end(self) -> list[Event]:
        return [*([self._usage] if self._usage else []), Completed("stop")]

    def finish(self) -> None:
        if not self.done:
            raise UpstreamError("The A2A agent's stream ended before its task did.")


def _parts(value: object) -> list[Json]:
    if isinstance(value, dict):
        value = value.get("parts")
    return [p for p in value if isinstance(p, dict)] if isinstance(value, list) else []


def _usage(metadata: object) -> Usage | None:
    """Token usage an agent reports in its metadata (``usage``), if it does."""
    usage = metadata.get("usage") if isinstance(metadata, dict) else None
    if not isinstance(usage, dict):
        return None
    given = usage.get("inputTokens", usage.get("input_tokens"))
    made = usage.get("outputTokens", usage.get("output_tokens"))
    if _count(given) and _count(made):
        assert isinstance(given, int) and isinstance(made, int)
        return Usage(input_tokens=given, output_tokens=made)
    return None


def _count(n: object) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**53


def _rpc_error(error: object) -> UpstreamError | InvalidRequest:
    if not isinstance(error, dict):
        return UpstreamError(f"The A2A agent failed: {str(error)[:500]}")
    message = str(error.get("message", ""))[:500]
    code = error.get("code")
    detail = f"The A2A agent answered error {code}: {message}"
    if code in INVALID_PARAMS:
        return InvalidRequest(detail, code="upstream_rejected_request")
    return UpstreamError(detail)
