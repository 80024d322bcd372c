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

The binding is a ``Methods`` dialect (``gateway.dialects.a2a``) served by
``gateway.server.door.method_door``, like every dialect through the front door's
parts (the key, the body's limits, ``Gateway.open`` with the budget header, the
error shape of the path, the metrics): the sends ``Opens`` a call, which runs
detached from the request (``a2a_tasks.start``: its events rendered once, by the
run, into Redis, where every client follows them), and the other methods
``Reads`` stored tasks, opening none.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import datetime
from typing import Any

from aiohttp import web

from gateway import __version__
from gateway.conversation import a2a_live, a2a_tasks
from gateway.dialects import a2a_wire as wire
from gateway.dialects.a2a import A2A, AGENT_NOT_FOUND
from gateway.dialects.a2a_task import STATES, TERMINAL, trimmed
from gateway.errors import InvalidRequest, NotFound, PermissionDenied
from gateway.pipeline import Call, Gateway
from gateway.route import Route
from gateway.server.body import json_response
from gateway.server.door import Answer, Opened, Opens, Reads, Streamed, method_door
from gateway.server.keys import API_KEY, GATEWAY
from gateway.store import ApiKey
from gateway.store.policy import StoragePolicy

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
        raise NotFound(f"No agent '{agent}' here.", code=AGENT_NOT_FOUND)
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


def _agent(request: web.Request) -> str:
    """The agent in the path, if the key may call it (what it may not does not exist for
    it, as for the card: an HTTP 404), at an A2A version this agent speaks."""
    agent = request.match_info["agent"]
    try:
        request.app[GATEWAY].route(request[API_KEY], agent)
    except (PermissionDenied, NotFound):
        raise NotFound(f"No agent '{agent}' here.", code=AGENT_NOT_FOUND) from None
    wire.check_version(request.headers.get(wire.VERSION_HEADER))
    return agent


class _LiveSend:
    """A message to an agent whose storage is off: its task runs in this request."""

    def __init__(self, send: wire.SendParams, policy: StoragePolicy, *, streamed: bool) -> None:
        self.invocation, self._builder = a2a_live.prepare(policy.agent, send, policy)
        self._history = send.history_length
        self._streamed = streamed

    async def answer(self, call: Call) -> Answer:
        live = a2a_live.LiveTask(call, self._builder)
        if self._streamed:
            return Streamed(live.events())
        async with aclosing(live.events()) as running:
            async for _ in running:
                pass  # to its end: nothing is kept to come back to
        return {"task": trimmed(live.task, self._history)}


class _TaskSend:
    """A message that runs its task detached from the request (``a2a_tasks.start``): the
    answer follows the run, which outlives a client that leaves."""

    def __init__(
        self,
        request: web.Request,
        prepared: a2a_tasks.Prepared,
        send: wire.SendParams,
        policy: StoragePolicy,
        *,
        streamed: bool,
    ) -> None:
        self.invocation = prepared.invocation
        self._gateway = request.app[GATEWAY]
        self._key = request[API_KEY]
        self._prepared = prepared
        self._send = send
        self._policy = policy
        self._streamed = streamed

    async def answer(self, call: Call) -> Answer:
        gateway, key = self._gateway, self._key
        run = await a2a_tasks.start(gateway, key, call, self._prepared, self._policy)
        if self._streamed:
            return Streamed(a2a_tasks.follow(gateway, key, run.task_id, run.run_start))
        if not self._send.return_immediately:
            following = a2a_tasks.follow(gateway, key, run.task_id, run.run_start)
            async with aclosing(following):
                async for _ in following:
                    pass  # until the task ends, or asks for input
        stored = await a2a_tasks.load(gateway, key, self._policy.agent, run.task_id)
        return {"task": trimmed(stored.task, self._send.history_length)}


async def _send(request: web.Request, req: wire.RpcRequest) -> Opened:
    """``SendMessage`` and ``SendStreamingMessage``: a task run over the agent's route."""
    agent = _agent(request)
    gateway = request.app[GATEWAY]
    send = wire.send_params(req.params, gateway.config.limits)
    policy = gateway.storage(agent)
    streamed = req.method == "SendStreamingMessage"
    if not policy.allowed:
        return _LiveSend(send, policy, streamed=streamed)
    prepared = await a2a_tasks.prepare(gateway, request[API_KEY], agent, send)
    return _TaskSend(request, prepared, send, policy, streamed=streamed)


async def _get(request: web.Request, req: wire.RpcRequest) -> Answer:
    agent = _agent(request)
    stored = await a2a_tasks.load(
        request.app[GATEWAY], request[API_KEY], agent, wire.task_id_param(req.params)
    )
    return trimmed(stored.task, wire.history_length(req.params))


async def _list_tasks(request: web.Request, req: wire.RpcRequest) -> Answer:
    agent = _agent(request)
    return await _list(request.app[GATEWAY], request[API_KEY], agent, req.params)


async def _cancel(request: web.Request, req: wire.RpcRequest) -> Answer:
    agent = _agent(request)
    task_id = wire.task_id_param(req.params)
    return await a2a_tasks.cancel(request.app[GATEWAY], request[API_KEY], agent, task_id)


async def _subscribe(request: web.Request, req: wire.RpcRequest) -> Answer:
    agent = _agent(request)
    gateway, key = request.app[GATEWAY], request[API_KEY]
    task_id = wire.task_id_param(req.params)
    stored = await a2a_tasks.load(gateway, key, agent, task_id)
    state = stored.task["status"]["state"]
    if state in TERMINAL:
        raise wire.A2AError(
            wire.UNSUPPORTED_OPERATION,
            f"Task '{task_id}' is {state}: there is nothing to subscribe to.",
        )
    following = a2a_tasks.follow(gateway, key, task_id, stored.run_start)
    return Streamed(_subscribed(stored.task, following))


async def _subscribed(task: Json, events: AsyncGenerator[Json, None]) -> AsyncGenerator[Json, None]:
    """The task as it is now, then its stream responses from the start (all of its
    artifact so far), but the task as submitted."""
    async with aclosing(events):
        yield {"task": task}
        async for event in events:
            if "task" not in event:
                yield event


# The JSON-RPC binding at POST /a2a/{agent}: the A2A dialect's methods, served by the door.
DOOR = method_door(
    A2A,
    {
        "SendMessage": Opens(_send),
        "SendStreamingMessage": Opens(_send),
        "GetTask": Reads(_get),
        "ListTasks": Reads(_list_tasks),
        "CancelTask": Reads(_cancel),
        "SubscribeToTask": Reads(_subscribe),
    },
)


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
