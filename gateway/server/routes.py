"""The public endpoints' route table (the admin API's is in ``gateway.server.admin``)."""

from __future__ import annotations

from typing import Any

from gateway.dialects.chat import CHAT
from gateway.dialects.messages import MESSAGES
from gateway.dialects.responses import RESPONSES
from gateway.server import a2a, messages, misc, openapi, responses
from gateway.server.api import (
    AUTH_ERRORS,
    CALL_ERRORS,
    JSON,
    SSE,
    Operation,
    Param,
    Reply,
    Table,
    json_reply,
)
from gateway.server.credentials import api_key_or_bearer
from gateway.server.door import Door, front_door

# LibreChat serves its Agents API under this prefix; clients pointed at it keep working.
PREFIXES = ("/v1", "/api/agents/v1")

# The dialects' front doors (gateway.server.door): a new dialect is one more here, and
# its operation below.
CHAT_DOOR = front_door(CHAT)
RESPONSES_DOOR = front_door(RESPONSES, responses.CONVERSATION)
MESSAGES_DOOR = front_door(MESSAGES)
DOORS: tuple[Door[Any], ...] = (CHAT_DOOR, RESPONSES_DOOR, MESSAGES_DOOR, a2a.DOOR)

_AGENT = Param("agent", "path", description="an agent id (a route)", required=True)
_RESPONSE_ID = Param("response_id", "path", description="a stored response's id")
_STREAMED = "the answer: JSON, or with `stream: true` server-sent events"

V1 = Table(
    PREFIXES,
    (
        Operation(
            "POST",
            "/chat/completions",
            CHAT_DOOR.handler,
            "createChatCompletion",
            "Chat Completions, streaming or not",
            "chat",
            body="ChatCompletionRequest",
            replies=(Reply(200, _STREAMED, {JSON: "ChatCompletion", SSE: None}),),
            errors=CALL_ERRORS,
        ),
        Operation(
            "GET",
            "/models",
            misc.models,
            "listModels",
            "The agents this key may call",
            "models",
            replies=(json_reply(200, "the agents", "ModelList"),),
            errors=AUTH_ERRORS,
        ),
        Operation(
            "GET",
            "/models/{model}",
            misc.model,
            "retrieveModel",
            "One agent this key may call",
            "models",
            params=(Param("model", "path", description="an agent id"),),
            replies=(json_reply(200, "the agent", "Model"),),
            errors=(*AUTH_ERRORS, 404),
        ),
        Operation(
            "POST",
            "/responses",
            RESPONSES_DOOR.handler,
            "createResponse",
            "Open Responses, streaming, not, or in the background",
            "responses",
            body="ResponseRequest",
            replies=(Reply(200, _STREAMED, {JSON: "Response", SSE: None}),),
            errors=CALL_ERRORS,
        ),
        Operation(
            "GET",
            "/responses/{response_id}",
            responses.get_response,
            "getResponse",
            "A stored response (only the key that created it sees it), or with `stream=true` "
            "the events of a background streamed one, resumed after `starting_after`",
            "responses",
            params=(
                _RESPONSE_ID,
                Param("stream", "query", {"type": "string", "enum": ["true", "false"]}),
                Param(
                    "starting_after",
                    "query",
                    {"type": "integer", "minimum": 0},
                    description="with `stream=true`: the sequence number to resume after",
                ),
            ),
            replies=(
                Reply(
                    200,
                    "the response, or with `stream=true` its events",
                    {JSON: "Response", SSE: None},
                ),
            ),
            errors=(*AUTH_ERRORS, 400, 404),
        ),
        Operation(
            "POST",
            "/responses/{response_id}/cancel",
            responses.cancel_response,
            "cancelResponse",
            "Cancel a background response in progress",
            "responses",
            params=(_RESPONSE_ID,),
            replies=(json_reply(200, "the response, cancelled", "Response"),),
            errors=(*AUTH_ERRORS, 400, 404),
        ),
        Operation(
            "DELETE",
            "/responses/{response_id}",
            responses.delete_response,
            "deleteResponse",
            "Delete a stored response",
            "responses",
            params=(_RESPONSE_ID,),
            replies=(json_reply(200, "deleted", "DeletedResponse"),),
            errors=(*AUTH_ERRORS, 404),
        ),
        Operation(
            "GET",
            "/responses/{response_id}/input_items",
            responses.list_input_items,
            "listInputItems",
            "A stored response's context items",
            "responses",
            params=(
                _RESPONSE_ID,
                Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 100}),
                Param("order", "query", {"type": "string", "enum": ["asc", "desc"]}),
                Param("after", "query", description="an item id"),
            ),
            replies=(json_reply(200, "a page of items", "InputItemList"),),
            errors=(*AUTH_ERRORS, 400, 404),
        ),
        Operation(
            "POST",
            "/messages",
            MESSAGES_DOOR.handler,
            "createMessage",
            "Anthropic Messages, streaming or not",
            "messages",
            body="MessageRequest",
            replies=(Reply(200, _STREAMED, {JSON: "Message", SSE: None}),),
            errors=(*CALL_ERRORS, 529),
            error_dialect="anthropic",
            key_rule=api_key_or_bearer,
        ),
        Operation(
            "POST",
            "/messages/count_tokens",
            messages.count_tokens,
            "countTokens",
            "The gateway's estimate of a request's input tokens",
            "messages",
            body="CountTokensRequest",
            replies=(json_reply(200, "the estimate", "TokenCount"),),
            errors=(*AUTH_ERRORS, 400, 403, 404, 408, 413, 529),
            error_dialect="anthropic",
            key_rule=api_key_or_bearer,
        ),
    ),
)

ROOT = Table(
    ("",),
    (
        Operation(
            "GET",
            "/healthz",
            misc.healthz,
            "healthz",
            "Liveness: the process serves HTTP",
            "operations",
            security="none",
            replies=(json_reply(200, "alive", "Health"),),
        ),
        Operation(
            "GET",
            "/readyz",
            misc.readyz,
            "readyz",
            "Readiness: the store answers and the gateway is not draining",
            "operations",
            security="none",
            replies=(
                json_reply(200, "ready", "Readiness"),
                json_reply(503, "not ready", "Readiness"),
            ),
        ),
        Operation(
            "GET",
            a2a.CARD_PATH,
            a2a.well_known_card,
            "getWellKnownAgentCard",
            "The A2A agent card of the route with `a2a.well_known` (404 without one)",
            "a2a",
            security="none",
            replies=(json_reply(200, "the agent card", "AgentCard"),),
            errors=(401, 404),
            error_dialect="a2a",
        ),
        Operation(
            "GET",
            "/openapi.json",
            openapi.serve_document,
            "openapi",
            "This description",
            "operations",
            security="none",
            replies=(json_reply(200, "the OpenAPI 3.1 document", "OpenAPI"),),
        ),
    ),
)

# LibreChat's own Responses route lists its agents here too (its
# api/server/routes/agents/responses.js); registered before /responses/{response_id}.
LIBRECHAT = Table(
    ("/api/agents/v1",),
    (
        Operation(
            "GET",
            "/responses/models",
            misc.models,
            "listResponsesModels",
            "The agents this key may call (LibreChat's path for them)",
            "models",
            replies=(json_reply(200, "the agents", "ModelList"),),
            errors=AUTH_ERRORS,
        ),
    ),
)

# Every route as an A2A agent (gateway.server.a2a): its card, and the JSON-RPC binding.
A2A = Table(
    (a2a.PREFIX,),
    (
        Operation(
            "GET",
            "/{agent}" + a2a.CARD_PATH,
            a2a.agent_card,
            "getAgentCard",
            "The A2A agent card of an agent (a 404 to a key that may not call it)",
            "a2a",
            security="none",
            params=(_AGENT,),
            replies=(json_reply(200, "the agent card", "AgentCard"),),
            errors=(401, 404),
            error_dialect="a2a",
        ),
        Operation(
            "POST",
            "/{agent}",
            a2a.DOOR.handler,
            "a2aJsonRpc",
            "A2A 1.0 JSON-RPC: SendMessage, SendStreamingMessage, GetTask, ListTasks, "
            "CancelTask, SubscribeToTask (errors are JSON-RPC errors, but 401 and 404)",
            "a2a",
            params=(_AGENT,),
            replies=(
                Reply(
                    200,
                    "a JSON-RPC response, or a stream of them",
                    {JSON: "JsonRpcResponse", SSE: None},
                ),
            ),
            errors=(*AUTH_ERRORS, 404, 408, 413),
            error_dialect="a2a",
        ),
    ),
)

PUBLIC = (LIBRECHAT, V1, ROOT, A2A)
