"""A call's events as an A2A task: the ``Task`` object and its stream responses.

``TaskBuilder`` follows one run of a task: ``begin`` gives the task as submitted;
``feed`` turns each batch into stream responses (``artifactUpdate`` for the text,
as it comes); once the call has ended (``ended``), ``final`` gives the last status
update, with the task's cost in its metadata. The task's state follows A2A's
lifecycle: ``SUBMITTED``, ``WORKING``, then ``COMPLETED``, ``FAILED``,
``CANCELED``, or ``INPUT_REQUIRED`` when the agent called a function whose
result the client must send (a data part ``{"functionCall": ...}`` in the status
message; the client answers in the same task with ``{"functionCallOutput": ...}``).
"""

from __future__ import annotations

import copy
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway.events import (
    Batch,
    Completed,
    Failed,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    Usage,
)
from gateway.invocation import FunctionCall, InputItem, Message, TextPart

Json = dict[str, Any]

SUBMITTED = "TASK_STATE_SUBMITTED"
WORKING = "TASK_STATE_WORKING"
COMPLETED = "TASK_STATE_COMPLETED"
FAILED = "TASK_STATE_FAILED"
CANCELED = "TASK_STATE_CANCELED"
INPUT_REQUIRED = "TASK_STATE_INPUT_REQUIRED"
REJECTED = "TASK_STATE_REJECTED"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELED, REJECTED})
# The states a stream ends at: terminal, or interrupted until the client answers.
FINAL = TERMINAL | {INPUT_REQUIRED, "TASK_STATE_AUTH_REQUIRED"}
STATES = (SUBMITTED, WORKING, COMPLETED, FAILED, CANCELED, INPUT_REQUIRED, REJECTED)

CREDITS_PER_USD = 1_000_000


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_final(event: Json) -> bool:
    """Whether a stream response ends the stream (a final status, or a final task)."""
    body = event.get("statusUpdate") or event.get("task")
    return isinstance(body, dict) and body.get("status", {}).get("state") in FINAL


def trimmed(task: Json, history_length: int | None, *, artifacts: bool = True) -> Json:
    """``task`` with only its latest ``history_length`` messages (all when ``None``)."""
    out = dict(task)
    if history_length is not None:
        out["history"] = task.get("history", [])[-history_length:] if history_length else []
    if not artifacts:
        out.pop("artifacts", None)
    return out


class TaskBuilder:
    """One run of a task, from its message to its final status."""

    def __init__(
        self,
        agent: str,
        message: Json,
        context_id: str | None,
        previous: Json | None = None,
        *,
        continued: bool = True,
    ) -> None:
        """A run of a new task, or (``previous``) of one that asked for input, which
        ``message`` answers; ``continued=False`` only ends it (a cancel)."""
        if previous is not None:  # an input-required task the client answered
            self.task = copy.deepcopy(previous)
            if continued:  # working again from the start: its stream opens with it so
                self.task["status"] = {"state": WORKING, "timestamp": now()}
        else:
            self.task = {
                "id": new_id("task"),
                "contextId": context_id or new_id("ctx"),
                "status": {"state": SUBMITTED, "timestamp": now()},
                "artifacts": [],
                "history": [],
                "metadata": {"agent": agent},
            }
        self.task_id: str = self.task["id"]
        self.context_id: str = self.task["contextId"]
        self.task["history"].append(
            {**message, "taskId": self.task_id, "contextId": self.context_id}
        )
        self._artifact = new_id("artifact")
        self._text: list[str] = []
        self._calls: dict[str, list[str]] = {}  # call id -> [name, arguments...]
        self._terminal: Completed | Failed | None = None
        self.ended = False

    def begin(self) -> list[Json]:
        """The task as submitted, then working: the stream's first responses."""
        submitted = copy.deepcopy(self.task)
        self.task["status"] = {"state": WORKING, "timestamp": now()}
        return [{"task": submitted}, self._status()]

    def feed(self, batch: Batch) -> list[Json]:
        out: list[Json] = []
        for event in batch:
            if isinstance(event, TextDelta):
                if event.text:
                    out.append(self._chunk(event.text))
            elif isinstance(event, ToolCallStarted):
                self._calls[event.call_id] = [event.name]
            elif isinstance(event, ToolCallArgumentsDelta):
                self._calls.setdefault(event.call_id, [""]).append(event.arguments)
            elif isinstance(event, Completed | Failed):
                self._terminal = event
                self.ended = True
        return out

    def _chunk(self, text: str) -> Json:
        first = not self._text
        self._text.append(text)
        artifact = {"artifactId": self._artifact, "name": "response", "parts": [{"text": text}]}
        return {
            "artifactUpdate": {
                "taskId": self.task_id,
                "contextId": self.context_id,
                "artifact": artifact,
                "append": not first,
                "lastChunk": False,
            }
        }

    def final(self, usage: Usage, *, canceled: bool = False) -> list[Json]:
        """The last status update, once the call has ended (or stopped, ``canceled``)."""
        self.ended = True
        text = "".join(self._text)
        if text:
            self.task["artifacts"].append(
                {"artifactId": self._artifact, "name": "response", "parts": [{"text": text}]}
            )
        parts: list[Json] = [{"text": text}] if text else []
        terminal = self._terminal
        if canceled:
            state = CANCELED
        elif isinstance(terminal, Failed):
            state = FAILED
            parts = [{"text": terminal.error.message}]
            self.task["metadata"]["error"] = {
                "status": terminal.error.status,
                "code": terminal.error.code or terminal.error.type,
            }
        elif self._calls:
            state = INPUT_REQUIRED
            parts += [
                {"data": {"functionCall": {"callId": c, "name": a[0], "arguments": "".join(a[1:])}}}
                for c, a in self._calls.items()
            ]
        else:
            state = COMPLETED
            if isinstance(terminal, Completed):
                self.task["metadata"]["finishReason"] = terminal.finish_reason
        self.task["metadata"].update(cost_metadata(usage, self.task["metadata"]))
        status: Json = {"state": state, "timestamp": now()}
        if parts:
            message = {
                "messageId": new_id("msg"),
                "role": "ROLE_AGENT",
                "parts": parts,
                "taskId": self.task_id,
                "contextId": self.context_id,
            }
            status["message"] = message
            self.task["history"].append(message)
        self.task["status"] = status
        return [self._status(self.task["metadata"])]

    def _status(self, metadata: Json | None = None) -> Json:
        update: Json = {
            "taskId": self.task_id,
            "contextId": self.context_id,
            "status": self.task["status"],
        }
        if metadata:
            update["metadata"] = metadata
        return {"statusUpdate": update}

    def output_items(self) -> list[InputItem]:
        """What the agent said, as canonical items for the context's next turn."""
        items: list[InputItem] = []
        text = "".join(self._text)
        if text:
            items.append(Message("assistant", (TextPart(text),)))
        for call_id, (name, *args) in self._calls.items():
            items.append(FunctionCall(call_id, name, "".join(args)))
        return items


def cost_metadata(usage: Usage, before: Json) -> Json:
    """A task's usage and cost, as its metadata shows them (credits: 1,000,000 = 1 USD),
    added to those of its earlier runs (``before``: its metadata so far)."""
    used = before.get("usage", {})
    credits = (usage.credits or 0) + before.get("cost", {}).get("credits", 0)
    return {
        "usage": {
            "inputTokens": usage.input_tokens + used.get("inputTokens", 0),
            "outputTokens": usage.output_tokens + used.get("outputTokens", 0),
            "estimated": usage.estimated or used.get("estimated", False),
        },
        "cost": {
            "credits": credits,
            "usd": str(Decimal(credits) / CREDITS_PER_USD),
        },
    }
