"""A fake Open Responses server on loopback (``POST /v1/responses``).

It speaks the real streaming wire format: ``event: <type>\\ndata: <json>\\n\\n``
frames, every event with ``type`` and ``sequence_number`` (0, 1, 2, ...), the
full lifecycle (``response.created``, ``response.in_progress``, per item
``output_item.added`` / content part / delta / done events /
``output_item.done``, then ``response.completed`` or ``response.incomplete``
with a full response object and usage), then ``data: [DONE]``. A failure
mid-stream is an ``error`` event (nested payload) and ``response.failed``.

``ResponsesScript(librechat=True)`` speaks LibreChat's variant of it
(``/api/agents/v1/responses``, read from its ``handlers.ts``): reasoning as
``response.reasoning.delta``, each frame written as two writes (the ``event:``
line, then the ``data:`` line), ``librechat:attachment`` events, function calls
LibreChat ran itself with no ``function_call_arguments.done``, no
``output_item.done`` and no ``function_call_output`` (its controller
``api/server/controllers/agents/responses.js`` replaces the handlers'
``on_tool_end``, which would have sent them: the call's item stays
``in_progress``), and a failure mid-stream that is a bare ``[DONE]``: no ``error``
event, no ``response.completed``/``response.failed`` (the controller's catch calls
``writeDone`` only).

``frames(script, body)`` builds the wire bytes; ``FakeResponsesUpstream``
serves them and records every request, like ``FakeOpenAIUpstream``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from tests.fakes.base import (
    DONE,
    FakeUpstream,
    Faults,
    Frame,
    Json,
    json_response,
    sse,
)


@dataclass(frozen=True)
class FunctionCallScript:
    name: str
    arguments: tuple[str, ...]  # streamed in these pieces
    call_id: str = "call_fake_1"
    output: str | None = None  # the upstream ran the tool itself and reports this output


@dataclass(frozen=True)
class ResponsesScript(Faults):
    """What the fake does with one request (and the ``Faults`` every fake takes)."""

    reasoning: tuple[str, ...] = ()
    # response.reasoning.delta (spec), response.reasoning_text.delta (OpenAI), or a summary
    reasoning_events: Literal["reasoning", "reasoning_text", "summary"] = "reasoning"
    content: tuple[str, ...] = ("Hello", " from", " responses")
    function_calls: tuple[FunctionCallScript, ...] = ()
    content_after_calls: tuple[str, ...] = ()  # a second message after the calls
    usage: Any = field(  # the terminal response's usage, sent as given (any JSON value)
        default_factory=lambda: {
            "input_tokens": 13,
            "output_tokens": 5,
            "total_tokens": 18,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
    )
    incomplete: str | None = None  # end with response.incomplete and this reason
    argument_deltas: bool = True  # send function_call_arguments.delta events
    argument_done: bool = True  # send function_call_arguments.done (+ full item in .done)
    error_after: int | None = None  # fail after this many text deltas
    error_message: str = "fake upstream exploded"
    error_type: str = "server_error"
    send_terminal: bool = True  # send the terminal lifecycle event
    send_done: bool = True  # end with data: [DONE]
    librechat: bool = False  # LibreChat's variant (see the module docstring)
    attachments: bool = False  # librechat:attachment events (implied by librechat)


def _response_object(response_id: str, body: Json, status: str) -> Json:
    """A full response object (all 31 keys), as the spec's lifecycle events carry."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": 1700000000,
        "completed_at": 1700000001 if status == "completed" else None,
        "status": status,
        "incomplete_details": None,
        "model": body.get("model", ""),
        "previous_response_id": None,
        "instructions": body.get("instructions"),
        "output": [],
        "error": None,
        "tools": body.get("tools") or [],
        "tool_choice": body.get("tool_choice", "auto"),
        "truncation": "disabled",
        "parallel_tool_calls": True,
        "text": body.get("text") or {"format": {"type": "text"}},
        "top_p": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "top_logprobs": 0,
        "temperature": 1.0,
        "reasoning": None,
        "usage": None,
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None,
        "store": False,
        "background": False,
        "service_tier": "default",
        "metadata": body.get("metadata") or {},
        "safety_identifier": None,
        "prompt_cache_key": None,
    }


class _Builder:
    """Builds one answer's events in order, numbering them."""

    def __init__(self, script: ResponsesScript, body: Json) -> None:
        self.script = script
        self.body = body
        self.id = "resp_fake0001"
        self.events: list[tuple[str, Json]] = []  # (kind, event); kind "content" for deltas
        self.output: list[Json] = []
        self.text_deltas = 0

    def emit(self, event: Json, kind: str = "event") -> None:
        event["sequence_number"] = len(self.events)
        self.events.append((kind, event))

    def response(self, status: str) -> Json:
        return _response_object(self.id, self.body, status) | {"output": list(self.output)}

    def add(self, item: Json) -> int:
        self.output.append(item)
        index = len(self.output) - 1
        self.emit({"type": "response.output_item.added", "output_index": index, "item": dict(item)})
        return index

    def done(self, index: int, item: Json) -> None:
        self.output[index] = item
        self.emit({"type": "response.output_item.done", "output_index": index, "item": item})

    def should_fail(self) -> bool:
        s = self.script
        return s.error_after is not None and self.text_deltas == s.error_after

    def fail(self) -> None:
        """An ``error`` event, then ``response.failed`` (LibreChat: nothing, a bare [DONE])."""
        s = self.script
        if s.librechat:  # responses.js: `if (res.headersSent) { writeDone(res); }`
            return
        error = {"type": s.error_type, "code": "fake_error", "message": s.error_message}
        if not s.librechat:
            error["param"] = None
        self.emit({"type": "error", "error": error})
        if not s.librechat:
            failed = self.response("failed") | {
                "error": {"code": "fake_error", "message": s.error_message}
            }
            self.emit({"type": "response.failed", "response": failed})

    def message(self, pieces: tuple[str, ...]) -> bool:
        """One message item; True when the answer failed in it."""
        item_id = f"msg_fake{len(self.output)}"
        index = self.add(
            {"type": "message", "id": item_id, "status": "in_progress", "role": "assistant"}
            | {"content": []}
        )
        part: Json = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        self.emit({"type": "response.content_part.added", **where, "part": part})
        sent: list[str] = []
        failed = False
        for piece in pieces:
            if self.should_fail():
                failed = True
                break
            self.emit(
                {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []},
                "content",
            )
            sent.append(piece)
            self.text_deltas += 1
        failed = failed or self.should_fail()
        text = "".join(sent)
        if not (failed and self.script.librechat):  # LibreChat just stops
            self.emit({"type": "response.output_text.done", **where, "text": text, "logprobs": []})
            self.emit(
                {"type": "response.content_part.done", **where, "part": part | {"text": text}}
            )
            status = "incomplete" if failed else "completed"
            item = {"type": "message", "id": item_id, "status": status, "role": "assistant"}
            self.done(index, item | {"content": [part | {"text": text}]})
        if failed:
            self.fail()
        return failed

    def reasoning(self) -> None:
        s = self.script
        item_id = f"rs_fake{len(self.output)}"
        index = self.add(
            {"type": "reasoning", "id": item_id, "status": "in_progress", "summary": []}
            | {"content": []}
        )
        text = "".join(s.reasoning)
        if s.reasoning_events == "summary":
            where = {"item_id": item_id, "output_index": index, "summary_index": 0}
            part = {"type": "summary_text", "text": ""}
            self.emit({"type": "response.reasoning_summary_part.added", **where, "part": part})
            for piece in s.reasoning:
                self.emit(
                    {"type": "response.reasoning_summary_text.delta", **where, "delta": piece}
                )
            self.emit({"type": "response.reasoning_summary_text.done", **where, "text": text})
            done = {"type": "summary_text", "text": text}
            self.emit({"type": "response.reasoning_summary_part.done", **where, "part": done})
            final = {"summary": [done], "content": []}
        else:
            name = "reasoning" if s.librechat else s.reasoning_events
            where = {"item_id": item_id, "output_index": index, "content_index": 0}
            part = {"type": "reasoning_text", "text": ""}
            self.emit({"type": "response.content_part.added", **where, "part": part})
            for piece in s.reasoning:
                self.emit({"type": f"response.{name}.delta", **where, "delta": piece})
            self.emit({"type": f"response.{name}.done", **where, "text": text})
            done = {"type": "reasoning_text", "text": text}
            self.emit({"type": "response.content_part.done", **where, "part": done})
            final = {"summary": [], "content": [done]}
        self.done(index, {"type": "reasoning", "id": item_id, "status": "completed"} | final)

    def function_call(self, call: FunctionCallScript) -> None:
        s = self.script
        item_id = f"fc_fake{len(self.output)}"
        item: Json = {
            "type": "function_call",
            "id": item_id,
            "call_id": call.call_id,
            "name": call.name,
            "arguments": "",
            "status": "in_progress",
        }
        index = self.add(item)
        where: Json = {"item_id": item_id, "output_index": index}
        if s.librechat:
            where["call_id"] = call.call_id  # LibreChat adds it
        arguments = "".join(call.arguments)
        if s.argument_deltas:
            for piece in call.arguments:
                self.emit(
                    {"type": "response.function_call_arguments.delta", **where, "delta": piece}
                )
        final = item | {"arguments": arguments, "status": "completed"}
        if s.librechat:  # handlers.ts: the deltas fill the item, which is never closed
            self.output[index] = item | {"arguments": arguments}
            return
        if s.argument_done:
            self.emit(
                {"type": "response.function_call_arguments.done", **where, "arguments": arguments}
            )
            self.done(index, final)
        else:
            self.output[index] = final
        if call.output is not None:  # a tool the upstream ran itself
            output = {
                "type": "function_call_output",
                "id": f"fco_fake{len(self.output)}",
                "call_id": call.call_id,
                "output": call.output,
                "status": "completed",
            }
            out_index = self.add(output)
            self.done(out_index, output)

    def build(self) -> list[tuple[str, Json]]:
        s = self.script
        self.emit({"type": "response.created", "response": self.response("in_progress")})
        self.emit({"type": "response.in_progress", "response": self.response("in_progress")})
        if s.librechat or s.attachments:
            attachment = {
                "type": "librechat:attachment",
                "attachment": {"file_id": "file_1", "filename": "chart.png", "type": "image/png"},
            }
            self.emit(attachment)
        if s.reasoning:
            self.reasoning()
        for call in s.function_calls:
            self.function_call(call)
        if (s.content or not s.function_calls) and self.message(s.content):
            return self.events
        if s.content_after_calls and self.message(s.content_after_calls):
            return self.events
        if not s.send_terminal:
            return self.events
        if s.incomplete is not None:
            final = self.response("incomplete") | {"incomplete_details": {"reason": s.incomplete}}
            final["usage"] = s.usage
            self.emit({"type": "response.incomplete", "response": final})
        else:
            final = self.response("completed") | {"usage": s.usage}
            self.emit({"type": "response.completed", "response": final})
        return self.events

    def final(self) -> Json:
        """The last response object (for a JSON answer)."""
        for _, event in reversed(self.events):
            if "response" in event:
                response: Json = event["response"]
                return response
        return self.response("failed")


def frames(script: ResponsesScript, body: Json) -> list[Frame]:
    """The frames in wire order; kind ``content`` for a text delta."""
    out: list[Frame] = []
    for kind, event in _Builder(script, body).build():
        head = b"event: " + event["type"].encode() + b"\n"
        data = sse(event)
        out.append((kind, [head, data] if script.librechat else [head + data]))
    if script.send_done:
        out.append(("done", [DONE]))
    return out


def final_response(script: ResponsesScript, body: Json) -> Json:
    builder = _Builder(script, body)
    builder.build()
    return builder.final()


class FakeResponsesUpstream(FakeUpstream[ResponsesScript]):
    """Serves ``POST /v1/responses`` (and LibreChat's ``/api/agents/v1/responses``)."""

    def __init__(self) -> None:
        super().__init__(ResponsesScript())

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/responses", self.handle)
        app.router.add_post("/api/agents/v1/responses", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        return await self.respond(request, self.next_script(), body)

    async def respond(
        self, request: web.Request, script: ResponsesScript, body: Json
    ) -> web.StreamResponse:
        return await self.answer(
            request,
            script,
            stream=bool(body.get("stream")),
            whole=lambda: json_response(final_response(script, body)),
            frames=lambda: frames(script, body),
        )
