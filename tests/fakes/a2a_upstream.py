"""A fake A2A 1.0 agent: the JSON-RPC binding's ``SendStreamingMessage`` (and
``SendMessage``), answering a task's stream responses as SSE (or, for ``SendMessage``
and ``json_answer``, the final task as one JSON-RPC response), with the ``Faults``
every fake takes. An error is a JSON-RPC error object, in the stream as the
official SDK's server writes one (``event: error``) or as the whole answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.base import FakeUpstream, Faults, Frame, Received, fail_after, json_response, sse

__all__ = ["A2AScript", "FakeA2AAgent", "Received", "rpc_error"]

Json = dict[str, Any]


@dataclass(frozen=True)
class A2AScript(Faults):
    text: tuple[str, ...] = ("Hello", " from", " the agent")  # one artifact chunk each
    usage: tuple[int, int] | None = (11, 3)  # reported in the final status's metadata
    final_state: str = "TASK_STATE_COMPLETED"
    status_text: str = ""  # the final status message's text
    error_after: int | None = None  # a JSON-RPC error after this many chunks
    error_message: str = "fake agent failed"


def rpc_error(message: str, code: int = -32603, rid: object = None) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}})


class FakeA2AAgent(FakeUpstream[A2AScript]):
    def __init__(self) -> None:
        super().__init__(A2AScript())

    @property
    def base_url(self) -> str:
        return f"{self.url}/rpc"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/rpc", self._rpc)

    async def _rpc(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        script = self.next_script()
        rid = body.get("id")
        return await self.answer(
            request,
            script,
            stream=body.get("method") == "SendStreamingMessage",
            whole=lambda: json_response(
                {"jsonrpc": "2.0", "id": rid, "result": {"task": _task(script, whole=True)}}
            ),
            frames=lambda: _frames(script, rid),
        )


def _task(script: A2AScript, *, whole: bool) -> Json:
    task: Json = {
        "id": "task-fake",
        "contextId": "ctx-fake",
        "status": {"state": script.final_state if whole else "TASK_STATE_SUBMITTED"},
    }
    if whole:
        text = "".join(script.text)
        task["artifacts"] = [{"artifactId": "a1", "parts": [{"text": text}]}] if text else []
        task["metadata"] = _metadata(script)
        if script.status_text:
            task["status"]["message"] = _agent_message(script.status_text)
    return task


def _metadata(script: A2AScript) -> Json:
    if script.usage is None:
        return {}
    return {"usage": {"inputTokens": script.usage[0], "outputTokens": script.usage[1]}}


def _agent_message(text: str) -> Json:
    return {"messageId": "m-agent", "role": "ROLE_AGENT", "parts": [{"text": text}]}


def _frames(script: A2AScript, rid: object) -> list[Frame]:
    def result(value: Json) -> bytes:
        return sse({"jsonrpc": "2.0", "id": rid, "result": value})

    ids = {"taskId": "task-fake", "contextId": "ctx-fake"}
    frames: list[Frame] = [
        ("meta", [result({"task": _task(script, whole=False)})]),
        ("meta", [result({"statusUpdate": {**ids, "status": {"state": "TASK_STATE_WORKING"}}})]),
    ]
    for i, piece in enumerate(script.text):
        artifact = {"artifactId": "a1", "parts": [{"text": piece}]}
        update = {**ids, "artifact": artifact, "append": i > 0, "lastChunk": False}
        frames.append(("content", [result({"artifactUpdate": update})]))
    status: Json = {"state": script.final_state}
    if script.status_text:
        status["message"] = _agent_message(script.status_text)
    final = {**ids, "status": status, "metadata": _metadata(script)}
    frames.append(("meta", [result({"statusUpdate": final})]))
    error = ("meta", [sse(rpc_error(script.error_message, rid=rid), "error")])
    return fail_after(frames, script.error_after, [error])
