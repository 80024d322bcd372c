"""``/a2a/{agent}``: every route as an A2A 1.0 agent (its card, and the JSON-RPC binding).

``GET /a2a/{agent}/.well-known/agent-card.json`` is the agent card: public (it
says what the route's ``a2a`` settings say, and how to authenticate), and a 404
to a key that may not call the agent. ``POST /a2a/{agent}`` takes the JSON-RPC
methods ``SendMessage``, ``SendStreamingMessage``, ``GetTask``, ``ListTasks``,
``CancelTask`` and ``SubscribeToTask``; every error of a method is a JSON-RPC
error with A2A's codes (HTTP 200), while a missing or bad key is an HTTP 401 (and
an agent the key may not call a 404), with a JSON-RPC error as the body. The tasks
themselves are ``gateway.conversation.a2a_tasks``', kept in Redis; an agent whose
storage is off (``store: never``) is served live, keeping nothing
(``gateway.conversation.a2a_live``).

Why not a ``Dialect`` behind ``gateway.server.door.front_door``: that seam answers a
request with its own call's events, while an A2A method may start no call (GetTask,
ListTasks, CancelTask, SubscribeToTask share one endpoint with the sends) and a send
answers with a task that outlives the request: its events are rendered once, by the
run, into Redis (``TaskBuilder`` is the renderer), and every client follows them
from there. What the door does for every dialect it does here too, through the same
parts: the key (``credentials``), the body's limits (``read_request``), the call
(``Gateway.open``: route, admission, fallback), the budget header, the error shape
of the path (``middlewares.ERROR_SHAPES``) and the metrics (``middlewares.DIALECTS``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from gateway import __version__, sse
from gateway.conversation import a2a_live, a2a_tasks
from gateway.dialects import a2a_wire as wire
from gateway.dialects.a2a_task import STATES, TERMINAL, trimmed
from gateway.errors import GatewayError, InvalidRequest, NotFound, PermissionDenied
from gateway.pipeline import Gateway
from gateway.route import Route
from gateway.server.body import budget, json_response, read_request
from gateway.server.keys import API_KEY, GATEWAY, REQUEST_ID
from gateway.server.middlewares import ERROR
from gateway.server.streaming import send_sse
from gateway.store import ApiKey

Json = dict[str, Any]
PREFIX = "/a2a"
CARD_PATH = "/.well-known/agent-card.json"
# A status filter that filters nothing: unset, as protobuf writes it, or as the Node SDK
# does for a request that leaves it out ("UNRECOGNIZED").
_NO_STATUS = (None, "", "TASK_STATE_UNSPECIFIED", "UNRECOGNIZED")
# TaskState by its protobuf number.
PROTO_STATES = ("TASK_STATE_UNSPECIFIED", *STATES, "TASK_STATE_AUTH_REQUIRED")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


async def well_known_card(request: web.Request) -> web.Response:
    """``/.well-known/agent-card.json``: the card of the route with ``a2a.well_known``
    (the spec's recommended place, where a client given only the host looks)."""
    routes = request.app[GATEWAY].config.routes
    agent = next((a for a, route in routes.items() if route.a2a.well_known), None)
    if agent is None:
        raise NotFound("No agent is served at this origin's well-known place.")
    return await _card(request, agent)


async def agent_card(request: web.Request) -> web.Response:
    """The agent card; with an ``Authorization`` header, only for a key that may call it."""
    return await _card(request, request.match_info["agent"])


async def _card(request: web.Request, agent: str) -> web.Response:
    gateway = request.app[GATEWAY]
    authorization = request.headers.get("Authorization")
    route = gateway.config.routes.get(agent)
    if authorization is not None:
        key = await gateway.auth.authenticate(authorization)
        if not key.allows(agent):
            route = None
    if route is None:
        raise NotFound(f"No agent '{agent}' here.", code="agent_not_found")
    base = f"{request.scheme}://{request.host}{PREFIX}/{agent}"
    return json_response(card(agent, route, base))


def card(agent: str, route: Route, url: str) -> Json:
    a2a = route.a2a
    skills = [
        {
            "id": s.id,
            "name": s.name,
            "description": s.description or s.name,
            "tags": list(s.tags),
            **({"examples": list(s.examples)} if s.examples else {}),
        }
        for s in a2a.skills
    ] or [
        {
            "id": agent,
            "name": a2a.name or agent,
            "description": a2a.description or f"Talk to the agent '{agent}'.",
            "tags": ["chat"],
        }
    ]
    return {
        "name": a2a.name or agent,
        "description": a2a.description or f"The agent '{agent}', served by the agent gateway.",
        "supportedInterfaces": [
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": wire.VERSION}
        ],
        "version": __version__,
        "capabilities": {"streaming": True, "pushNotifications": False},
        "securitySchemes": {
            "bearer": {
                "httpAuthSecurityScheme": {
                    "scheme": "Bearer",
                    "description": "The gateway's API key: 'Authorization: Bearer <key>'.",
                }
            }
        },
        "securityRequirements": [{"schemes": {"bearer": {"list": []}}}],
        "defaultInputModes": list(a2a.input_modes),
        "defaultOutputModes": list(a2a.output_modes),
        "skills": skills,
    }


async def rpc(request: web.Request) -> web.StreamResponse:
    """One JSON-RPC request to the agent; its errors as JSON-RPC errors."""
    gateway = request.app[GATEWAY]
    key = request[API_KEY]
    agent = request.match_info["agent"]
    try:
        gateway.route(key, agent)
    except PermissionDenied:  # as for the card: what this key may not call does not exist
        raise NotFound(f"No agent '{agent}' here.", code="agent_not_found") from None
    try:
        body = await read_request(request, gateway.config.limits)
    except InvalidRequest as exc:
        if exc.status != 400:
            raise  # 408: answered with its status by the middleware
        return json_response(wire.error(None, wire.A2AError(wire.PARSE_ERROR, exc.message)))
    rid = wire.request_id_of(body)
    try:
        req = wire.rpc_request(body)
        wire.check_version(request.headers.get(wire.VERSION_HEADER))
        return await _method(request, gateway, key, agent, req)
    except GatewayError as exc:
        request[ERROR] = exc  # the status the metrics and the access log record
        return json_response(wire.error(rid, exc), headers=exc.headers)


async def _method(
    request: web.Request, gateway: Gateway, key: ApiKey, agent: str, req: wire.RpcRequest
) -> web.StreamResponse:
    params = req.params
    match req.method:
        case "SendMessage":
            send = wire.send_params(params, gateway.config.limits)
            policy = gateway.storage(agent)
            if not policy.allowed:
                live = await a2a_live.start(
                    gateway, key, agent, send, policy, request[REQUEST_ID], budget(request)
                )
                async with aclosing(live.events()) as running:
                    async for _ in running:
                        pass  # to its end: nothing is kept to come back to
                task = trimmed(live.task, send.history_length)
                return json_response(wire.result(req.id, {"task": task}))
            run = await a2a_tasks.start(
                gateway, key, agent, send, policy, request[REQUEST_ID], budget(request)
            )
            if not send.return_immediately:
                async for _ in a2a_tasks.follow(gateway, key, run.task_id, run.run_start):
                    pass  # until the task ends, or asks for input
            stored = await a2a_tasks.load(gateway, key, agent, run.task_id)
            task = trimmed(stored.task, send.history_length)
            return json_response(wire.result(req.id, {"task": task}))
        case "SendStreamingMessage":
            send = wire.send_params(params, gateway.config.limits)
            policy = gateway.storage(agent)
            if not policy.allowed:
                live = await a2a_live.start(
                    gateway, key, agent, send, policy, request[REQUEST_ID], budget(request)
                )
                return await send_sse(request, _frames(req.id, live.events()))
            run = await a2a_tasks.start(
                gateway, key, agent, send, policy, request[REQUEST_ID], budget(request)
            )
            events = a2a_tasks.follow(gateway, key, run.task_id, run.run_start)
            return await send_sse(request, _frames(req.id, events))
        case "GetTask":
            stored = await a2a_tasks.load(gateway, key, agent, wire.task_id_param(params))
            task = trimmed(stored.task, wire.history_length(params))
            return json_response(wire.result(req.id, task))
        case "ListTasks":
            return json_response(wire.result(req.id, await _list(gateway, key, agent, params)))
        case "CancelTask":
            task = await a2a_tasks.cancel(gateway, key, agent, wire.task_id_param(params))
            return json_response(wire.result(req.id, task))
        case "SubscribeToTask":
            task_id = wire.task_id_param(params)
            stored = await a2a_tasks.load(gateway, key, agent, task_id)
            state = stored.task["status"]["state"]
            if state in TERMINAL:
                raise wire.A2AError(
                    wire.UNSUPPORTED_OPERATION,
                    f"Task '{task_id}' is {state}: there is nothing to subscribe to.",
                )
            following = a2a_tasks.follow(gateway, key, task_id, stored.run_start)
            events = _subscribed(stored.task, following)
            return await send_sse(request, _frames(req.id, events))
        case _:
            instead = wire.V03_METHODS.get(req.method)
            hint = f" (A2A 0.3's name: this agent speaks 1.0, '{instead}')" if instead else ""
            raise wire.A2AError(wire.METHOD_NOT_FOUND, f"Method '{req.method}' not found{hint}.")


async def _subscribed(task: Json, events: AsyncGenerator[Json, None]) -> AsyncGenerator[Json, None]:
    """The task as it is now, then its stream responses from the start (all of its
    artifact so far), but the task as submitted."""
    yield {"task": task}
    async for event in events:
        if "task" not in event:
            yield event


async def _frames(
    rid: str | int | None, events: AsyncGenerator[Json, None]
) -> AsyncIterator[bytes]:
    # Closed with the frames: a live task's call stops as soon as its client leaves.
    async with aclosing(events):
        async for event in events:
            yield sse.data_frame(orjson.dumps(wire.result(rid, event)))


async def _list(gateway: Gateway, key: ApiKey, agent: str, params: Json) -> Json:
    # An agent whose storage is off keeps no task (one stored before is not read back).
    allowed = gateway.storage(agent).allowed
    tasks = await gateway.a2a_tasks.listed(key.id, agent) if allowed else []
    context_id = params.get("contextId")
    if context_id:
        tasks = [t for t in tasks if t.get("contextId") == context_id]
    status = params.get("status")
    if isinstance(status, int) and not isinstance(status, bool):  # the enum's number
        status = PROTO_STATES[status] if 0 <= status < len(PROTO_STATES) else str(status)
    if status in PROTO_STATES[1:]:
        tasks = [t for t in tasks if t["status"]["state"] == status]
    elif status not in _NO_STATUS:
        known = ", ".join(PROTO_STATES[1:])
        raise InvalidRequest(f"'status' must be one of {known}.", param="status")
    after = params.get("statusTimestampAfter")
    if after is not None:
        since = _timestamp(after)
        tasks = [t for t in tasks if _timestamp(t["status"]["timestamp"]) > since]
    size = params.get("pageSize")
    size = DEFAULT_PAGE_SIZE if size is None else size
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidRequest(
            f"'pageSize' must be an integer from 1 to {MAX_PAGE_SIZE}.", param="pageSize"
        )
    token = params.get("pageToken") or "0"
    if not (isinstance(token, str) and token.isascii() and token.isdigit()):
        raise InvalidRequest("'pageToken' is not a token this agent gave.", param="pageToken")
    start = int(token)
    page = tasks[start : start + size]
    history = wire.history_length(params)
    artifacts = bool(params.get("includeArtifacts", False))
    more = start + size < len(tasks)
    return {
        "tasks": [trimmed(t, history, artifacts=artifacts) for t in page],
        "nextPageToken": str(start + size) if more else "",
        "pageSize": len(page),
        "totalSize": len(tasks),
    }


def _timestamp(value: object) -> datetime:
    """An RFC 3339 timestamp (protobuf's JSON form of one)."""
    try:
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is not None:
                return parsed
    except ValueError:
        pass
    raise InvalidRequest(
        "'statusTimestampAfter' must be an RFC 3339 timestamp (e.g. 2026-01-01T00:00:00Z).",
        param="statusTimestampAfter",
    )
