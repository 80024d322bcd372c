"""The A2A 1.0 JSON-RPC binding: requests read, messages turned into canonical input,
and every error as a JSON-RPC error object with A2A's codes.

The wire format is A2A 1.0's JSON (the protobuf JSON mapping: camelCase fields,
``ROLE_USER``, ``TASK_STATE_COMPLETED``), as the official SDKs (``a2a-sdk`` 1.x,
``@a2a-js/sdk`` 1.x) send it for an agent card whose interface says 1.0.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.dialects.request_limits import DEFAULTS, RequestLimits, check_request
from gateway.errors import GatewayError, InvalidRequest, NotFound
from gateway.invocation import (
    ContentPart,
    FilePart,
    FunctionCallOutput,
    ImagePart,
    InputItem,
    Message,
    TextPart,
)

Json = dict[str, Any]
VERSION = "1.0"
VERSION_HEADER = "A2A-Version"

METHODS = (
    "SendMessage",
    "SendStreamingMessage",
    "GetTask",
    "ListTasks",
    "CancelTask",
    "SubscribeToTask",
)

# A2A 0.3's names of the methods, answered "not found" with the 1.0 name: a 0.3 client
# also sends 0.3's payloads, another wire format (docs/a2a.md).
V03_METHODS = {
    "message/send": "SendMessage",
    "message/stream": "SendStreamingMessage",
    "tasks/get": "GetTask",
    "tasks/list": "ListTasks",
    "tasks/cancel": "CancelTask",
    "tasks/resubscribe": "SubscribeToTask",
}

# JSON-RPC's own codes and A2A's (its errors section); the gateway's other errors
# (402, 403, 429, 5xx) are internal errors carrying the gateway's status and code.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
TASK_NOT_FOUND = -32001
TASK_NOT_CANCELABLE = -32002
PUSH_NOTIFICATION_NOT_SUPPORTED = -32003
UNSUPPORTED_OPERATION = -32004
CONTENT_TYPE_NOT_SUPPORTED = -32005
VERSION_NOT_SUPPORTED = -32009

# A2A 1.0's methods of the capabilities the card does not declare: the error the spec's
# capability validation (section 3.3.4) names for each, rather than "method not found".
_PUSH = "Push notifications"
UNSUPPORTED_METHODS: dict[str, tuple[int, str]] = {
    "CreateTaskPushNotificationConfig": (PUSH_NOTIFICATION_NOT_SUPPORTED, _PUSH),
    "GetTaskPushNotificationConfig": (PUSH_NOTIFICATION_NOT_SUPPORTED, _PUSH),
    "ListTaskPushNotificationConfigs": (PUSH_NOTIFICATION_NOT_SUPPORTED, _PUSH),
    "DeleteTaskPushNotificationConfig": (PUSH_NOTIFICATION_NOT_SUPPORTED, _PUSH),
    "GetExtendedAgentCard": (UNSUPPORTED_OPERATION, "An extended agent card"),
}

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


class A2AError(GatewayError):
    """An error A2A names with a code of its own (answered with HTTP 200, as JSON-RPC)."""

    type = "invalid_request_error"

    def __init__(
        self, rpc_code: int, message: str, *, status: int = 400, rpc_id: str | int | None = None
    ) -> None:
        super().__init__(message, status=status, code=f"a2a_{-rpc_code}")
        self.rpc_code = rpc_code
        self.rpc_id = rpc_id  # of a request whose envelope was read as far as its id


def task_not_found(task_id: str, why: str = "") -> A2AError:
    """A2A's task-not-found error; ``why`` says more than that it is not there."""
    reason = f": {why}" if why else ""
    return A2AError(TASK_NOT_FOUND, f"Task '{task_id}' not found{reason}.", status=404)


@dataclass(frozen=True, slots=True)
class RpcRequest:
    id: str | int | None
    method: str
    params: Json


def rpc_request(body: object) -> RpcRequest:
    """The JSON-RPC 2.0 request in ``body``, or an ``A2AError`` (``INVALID_REQUEST``)
    carrying the request's id when it has a valid one."""
    if not isinstance(body, dict):
        raise A2AError(INVALID_REQUEST, "A JSON-RPC request is one JSON object (no batches).")
    rid = body.get("id")
    if isinstance(rid, bool) or not (rid is None or isinstance(rid, str | int)):
        raise A2AError(INVALID_REQUEST, "'id' must be a string, an integer or null.")
    if body.get("jsonrpc") != "2.0":
        raise A2AError(INVALID_REQUEST, "'jsonrpc' must be exactly '2.0'.", rpc_id=rid)
    method = body.get("method")
    if not isinstance(method, str) or not method:
        raise A2AError(INVALID_REQUEST, "'method' must be a non-empty string.", rpc_id=rid)
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise A2AError(INVALID_PARAMS, "'params' must be an object.", rpc_id=rid)
    return RpcRequest(rid, method, params)


def check_version(header: str | None) -> None:
    """Accept 1.x; a request without the header is taken as 1.0 (the only version served)."""
    if not header:
        return
    major, _, _ = header.strip().partition(".")
    if major != "1":
        raise A2AError(
            VERSION_NOT_SUPPORTED,
            f"A2A version '{header}' is not supported; this agent speaks A2A {VERSION}.",
        )


def result(rid: str | int | None, value: object) -> Json:
    return {"jsonrpc": "2.0", "id": rid, "result": value}


def error(rid: str | int | None, exc: GatewayError) -> Json:
    """``exc`` as a JSON-RPC error response."""
    if isinstance(exc, A2AError):
        code = exc.rpc_code
    elif isinstance(exc, NotFound) and exc.param == "id":
        code = TASK_NOT_FOUND
    elif exc.status in (400, 404, 413):
        code = INVALID_PARAMS
    else:
        code = INTERNAL_ERROR
    reason = (exc.code or exc.type).upper()
    info = {
        "@type": ERROR_INFO,
        "reason": reason,
        "domain": "agent-gateway",
        "metadata": {"status": str(exc.status), "type": exc.type},
    }
    err: Json = {"code": code, "message": exc.message, "data": [info]}
    return {"jsonrpc": "2.0", "id": rid, "error": err}


def error_body(exc: GatewayError, request_id: str) -> tuple[int, bytes]:
    """An error the middlewares answer (401, 413, 503 before the method runs): its HTTP
    status, as the A2A security section has it, with a JSON-RPC error as the body."""
    return exc.status, orjson.dumps(error(None, exc))


# Messages -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class A2AMessage:
    """A client's message, read: its ids, and its parts as canonical content."""

    message_id: str
    context_id: str | None
    task_id: str | None
    items: tuple[InputItem, ...]  # a user message, and any function results it carries
    raw: Json  # as the client sent it, for the task's history


@dataclass(frozen=True, slots=True)
class SendParams:
    message: A2AMessage
    history_length: int | None
    return_immediately: bool
    metadata: Json


def send_params(params: Json, limits: RequestLimits = DEFAULTS) -> SendParams:
    """A send's params, within ``limits`` as every dialect's request (its ``parts`` the
    list of turns they count)."""
    raw = params.get("message")
    check_request(raw, limits, items="parts")
    if not isinstance(raw, dict):
        raise InvalidRequest("'params.message' must be an object.", param="message")
    config = params.get("configuration") or {}
    if not isinstance(config, dict):
        raise InvalidRequest("'params.configuration' must be an object.", param="configuration")
    metadata = params.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidRequest("'params.metadata' must be an object.", param="metadata")
    return SendParams(
        message(raw),
        history_length(config),
        bool(config.get("returnImmediately", False)),
        metadata,
    )


def history_length(params: Json) -> int | None:
    n = params.get("historyLength")
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidRequest("'historyLength' must be an integer >= 0.", param="historyLength")
    return n


def task_id_param(params: Json) -> str:
    task_id = params.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise InvalidRequest("'params.id' must be a task id.", param="id")
    return task_id


def message(raw: Json) -> A2AMessage:
    message_id = raw.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        raise InvalidRequest("'message.messageId' is required.", param="message.messageId")
    role = raw.get("role")
    if role not in ("ROLE_USER", "user"):
        raise InvalidRequest("'message.role' must be 'ROLE_USER'.", param="message.role")
    parts = raw.get("parts")
    if not isinstance(parts, list) or not parts:
        raise InvalidRequest("'message.parts' must be a non-empty list.", param="message.parts")
    content: list[ContentPart] = []
    outputs: list[InputItem] = []
    for i, part in enumerate(parts):
        where = f"message.parts[{i}]"
        if not isinstance(part, dict):
            raise InvalidRequest(f"'{where}' must be an object.", param=where)
        output = _function_output(part)
        if output is not None:
            outputs.append(output)
        else:
            content.append(_part(part, where))
    items: list[InputItem] = list(outputs)
    if content:
        items.append(Message("user", tuple(content)))
    return A2AMessage(
        message_id,
        _optional_id(raw, "contextId"),
        _optional_id(raw, "taskId"),
        tuple(items),
        raw,
    )


def _optional_id(raw: Json, name: str) -> str | None:
    value = raw.get(name)
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > 128:
        raise InvalidRequest(f"'message.{name}' must be a string id.", param=f"message.{name}")
    return value


def _function_output(part: Json) -> FunctionCallOutput | None:
    """A data part ``{"functionCallOutput": {"callId", "output"}}``: the client's result for a
    function call the agent asked for (a task in ``TASK_STATE_INPUT_REQUIRED``)."""
    data = part.get("data")
    if not isinstance(data, dict) or "functionCallOutput" not in data:
        return None
    out = data["functionCallOutput"]
    if not (isinstance(out, dict) and isinstance(out.get("callId"), str)):
        raise InvalidRequest("'functionCallOutput' needs a 'callId'.", param="functionCallOutput")
    output = out.get("output", "")
    text = output if isinstance(output, str) else orjson.dumps(output).decode()
    return FunctionCallOutput(out["callId"], text)


def _part(part: Json, where: str) -> ContentPart:
    media = part.get("mediaType") or ""
    filename = part.get("filename") or None
    if "text" in part:
        if not isinstance(part["text"], str):
            raise InvalidRequest(f"'{where}.text' must be a string.", param=where)
        return TextPart(part["text"])
    if "data" in part:
        return TextPart(orjson.dumps(part["data"]).decode())
    if "url" in part:
        url = part["url"]
        if not isinstance(url, str):
            raise InvalidRequest(f"'{where}.url' must be a string.", param=where)
        if isinstance(media, str) and media.startswith("image/"):
            return ImagePart(url=url)
        return FilePart(filename=filename, url=url)
    if "raw" in part:
        raw = part["raw"]
        if not isinstance(raw, str):
            raise InvalidRequest(f"'{where}.raw' must be base64 text.", param=where)
        try:
            base64.b64decode(raw, validate=True)
        except ValueError:
            raise InvalidRequest(f"'{where}.raw' is not valid base64.", param=where) from None
        data_url = f"data:{media or 'application/octet-stream'};base64,{raw}"
        if isinstance(media, str) and media.startswith("image/"):
            return ImagePart(url=data_url)
        return FilePart(filename=filename, data=data_url)
    raise A2AError(CONTENT_TYPE_NOT_SUPPORTED, f"'{where}' has none of text, data, url or raw.")
