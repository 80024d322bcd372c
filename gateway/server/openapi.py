"""``GET /openapi.json``: an OpenAPI 3.1 description built from the route tables.

Nothing here is written by hand per endpoint: paths, methods, parameters,
bodies and answers come from the ``Operation`` records the applications
register their routes from (``gateway.server.api``), bodies' schemas from
``gateway.server.schemas``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from gateway import __version__
from gateway.server import schemas
from gateway.server.api import JSON, Operation, Table
from gateway.server.body import json_response

OPENAPI_DOCUMENT: web.AppKey[dict[str, Any]] = web.AppKey("openapi_document")

_STATUS_TEXT = {
    400: "The request is malformed; `param` names the field",
    401: "Missing or wrong credentials",
    402: "The key's balance or budget cannot cover the request",
    403: "The key may not call this agent",
    404: "No such agent, key, response or endpoint",
    408: "The request body did not arrive in time",
    409: "The key's state does not allow this",
    413: "The request is larger than the gateway accepts",
    429: "Over a rate limit (see Retry-After)",
    502: "The backend failed",
    503: "The store is unavailable, or the gateway is at capacity or draining",
    504: "The backend timed out",
    529: "The gateway is overloaded (Anthropic's overloaded_error)",
}

_SECURITY_SCHEMES = {
    "api_key": {
        "type": "http",
        "scheme": "bearer",
        "description": "a gateway API key (`sk-gw-...`); /v1/messages also takes `x-api-key`",
    },
    "admin_token": {
        "type": "http",
        "scheme": "bearer",
        "description": "the admin token from the variable `admin.token_env` names",
    },
}

_ALIAS_NOTE = (
    "Every /v1 endpoint is also served under /api/agents/v1 (LibreChat's Agents API prefix),"
    " where Chat Completions carry reasoning as `reasoning`, as LibreChat's clients read it."
)


def document(tables: Iterable[Table], *, title: str = "Agent gateway") -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``tables`` (each described under its first prefix)."""
    paths: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for table in tables:
        prefix = table.prefixes[0]
        for op in table.operations:
            path = prefix + op.path
            paths.setdefault(_openapi_path(path), {})[op.method.lower()] = _operation(op, used)
    components: dict[str, Any] = {
        "schemas": {name: s for name, s in schemas.SCHEMAS.items() if name in _closure(used)},
        "securitySchemes": _SECURITY_SCHEMES,
    }
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {"title": title, "version": __version__, "description": _ALIAS_NOTE},
        "paths": paths,
        "components": components,
    }


def _operation(op: Operation, used: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "security": [] if op.security == "none" else [{op.security: []}],
    }
    if op.params:
        out["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required or p.where == "path",
                "schema": dict(p.schema),
                **({"description": p.description} if p.description else {}),
            }
            for p in op.params
        ]
    if op.body is not None:
        used.add(op.body)
        out["requestBody"] = {"required": True, "content": {JSON: {"schema": schemas.ref(op.body)}}}
    responses: dict[str, Any] = {}
    for reply in op.replies:
        content: dict[str, Any] = {}
        for media, name in reply.content.items():
            if name is None:
                content[media] = {"schema": {"type": "string"}}
            else:
                used.add(name)
                content[media] = {"schema": schemas.ref(name)}
        responses[str(reply.status)] = {"description": reply.description} | (
            {"content": content} if content else {}
        )
    error = {"anthropic": "AnthropicError", "a2a": "JsonRpcError"}.get(op.error_dialect, "Error")
    for status in op.errors:
        used.add(error)
        responses[str(status)] = {
            "description": _STATUS_TEXT.get(status, "An error"),
            "content": {JSON: {"schema": schemas.ref(error)}},
        }
    out["responses"] = responses
    return out


def _openapi_path(path: str) -> str:
    return re.sub(r"\{([^}:]+)(:[^}]*)?\}", r"{\1}", path)


def _closure(names: set[str]) -> set[str]:
    """``names`` and every schema they refer to, transitively."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(re.findall(r"#/components/schemas/(\w+)", repr(schemas.SCHEMAS[name])))
    return seen


async def serve_document(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI_DOCUMENT])
