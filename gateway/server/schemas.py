"""JSON Schemas (2020-12) of request and response bodies, by name.

``gateway.server.api`` operations refer to them by name; ``/openapi.json``
publishes them under ``components.schemas``. Request schemas describe what a
well-formed request looks like (the dialect parsers are the authority and
answer anything else with a 400 naming the field); unknown fields are allowed
where the gateway ignores them, refused where it refuses them (the admin API).
"""

from __future__ import annotations

from typing import Any

from gateway import amounts, key_rules
from gateway.store.records import AUDIT_ACTIONS

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


_NULLABLE_TIME: Schema = {"type": ["number", "null"], "description": "UNIX seconds"}
_COUNT: Schema = {"type": "integer", "minimum": 0}
_TEXT: Schema = {"type": "string", "maxLength": 1000}
_AGENT_ID: Schema = {"type": "string", "description": "the agent id", "examples": ["echo"]}

_LIMITS: Schema = {
    "type": "object",
    "description": "0 means no limit",
    "properties": {
        "rpm": {**_COUNT, "description": "requests per minute"},
        "tpm": {**_COUNT, "description": "tokens (input + output) per minute"},
        "max_concurrent": {**_COUNT, "description": "requests in flight"},
        "daily_budget": {**_COUNT, "description": "credits per UTC day"},
        "monthly_budget": {**_COUNT, "description": "credits per UTC month"},
    },
    "additionalProperties": False,
}

_KEY_PROPERTIES: Schema = {
    "id": {"type": "string"},
    "name": {"type": "string"},
    "agents": {"type": "array", "items": {"type": "string"}},
    "created_at": {"type": "number"},
    "expires_at": _NULLABLE_TIME,
    "revoked_at": _NULLABLE_TIME,
    "hint": {"type": "string", "description": "the secret's first characters"},
    "limits": ref("Limits"),
    "note": {"type": "string"},
    "rotated_at": _NULLABLE_TIME,
    "previous_expires_at": {
        **_NULLABLE_TIME,
        "description": "until when the secret replaced by the last rotation is accepted",
    },
    "team": {
        "type": ["string", "null"],
        "description": "the team whose balance the key spends (null: its own)",
    },
}
_TEAM_PROPERTIES: Schema = {
    "id": {"type": "string"},
    "name": {"type": "string"},
    "created_at": {"type": "number"},
    "limits": ref("Limits"),
    "note": {"type": "string"},
}
_TEAM_REQUIRED = ["id", "name", "created_at", "limits"]
# What a bucket of the aggregates counts (gateway.store.aggregates.Totals).
_TOTALS: Schema = {
    "credits": {"type": "integer", "description": "credits charged by requests settled"},
    "requests": _COUNT,
    "errors": {**_COUNT, "description": "requests that did not complete"},
    "input_tokens": _COUNT,
    "output_tokens": _COUNT,
    "cached_input_tokens": _COUNT,
    "cache_write_tokens": _COUNT,
    "reasoning_tokens": _COUNT,
    "credited": {**_COUNT, "description": "a key's: credits added by hand"},
    "debited": {**_COUNT, "description": "a key's: credits removed by hand"},
}
_KEY_REQUIRED = ["id", "name", "agents", "created_at", "hint", "limits"]

_MESSAGE: Schema = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {"type": ["string", "array", "null"]},
    },
}

_ANTHROPIC_MESSAGE: Schema = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"type": "string", "enum": ["user", "assistant"]},
        "content": {"type": ["string", "array"]},
    },
}

SCHEMAS: dict[str, Schema] = {
    # Errors
    "Error": {
        "type": "object",
        "description": "OpenAI's error shape",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
    "AnthropicError": {
        "type": "object",
        "description": "Anthropic's error shape (everything under /v1/messages)",
        "required": ["type", "error"],
        "properties": {
            "type": {"const": "error"},
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            },
            "request_id": {"type": "string"},
        },
    },
    "JsonRpcError": {
        "type": "object",
        "description": "A JSON-RPC 2.0 error response (everything under /a2a)",
        "required": ["jsonrpc", "id", "error"],
        "properties": {
            "jsonrpc": {"const": "2.0"},
            "id": {"type": ["string", "integer", "null"]},
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "integer"},
                    "message": {"type": "string"},
                    "data": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
    },
    # A2A (gateway.server.a2a)
    "AgentCard": {
        "type": "object",
        "description": "An A2A 1.0 agent card",
        "required": ["name", "description", "supportedInterfaces", "capabilities", "skills"],
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "supportedInterfaces": {"type": "array", "items": {"type": "object"}},
            "version": {"type": "string"},
            "capabilities": {"type": "object"},
            "securitySchemes": {"type": "object"},
            "securityRequirements": {"type": "array", "items": {"type": "object"}},
            "defaultInputModes": {"type": "array", "items": {"type": "string"}},
            "defaultOutputModes": {"type": "array", "items": {"type": "string"}},
            "skills": {"type": "array", "items": {"type": "object"}},
        },
    },
    "JsonRpcResponse": {
        "type": "object",
        "description": "A JSON-RPC 2.0 response: a result, or an error with A2A's codes",
        "required": ["jsonrpc", "id"],
        "properties": {
            "jsonrpc": {"const": "2.0"},
            "id": {"type": ["string", "integer", "null"]},
            "result": {},
            "error": {"type": "object", "required": ["code", "message"]},
        },
    },
    # Public requests
    "ChatCompletionRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": _AGENT_ID,
            "messages": {"type": "array", "items": _MESSAGE},
            "stream": {"type": "boolean"},
            "stream_options": {
                "type": "object",
                "properties": {"include_usage": {"type": "boolean"}},
            },
            "max_tokens": {"type": "integer", "minimum": 1},
            "max_completion_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "logprobs": {"type": "boolean"},
            "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20},
            "tools": {"type": "array", "items": {"type": "object"}},
            "metadata": {"type": "object"},
        },
    },
    "ResponseRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": _AGENT_ID,
            "input": {"type": ["string", "array"]},
            "instructions": {"type": "string"},
            "stream": {"type": "boolean"},
            "store": {"type": "boolean"},
            "background": {"type": "boolean"},
            "previous_response_id": {"type": "string"},
            "max_output_tokens": {"type": "integer", "minimum": 1},
            "tools": {"type": "array", "items": {"type": "object"}},
            "metadata": {"type": "object"},
        },
    },
    "MessageRequest": {
        "type": "object",
        "required": ["model", "messages", "max_tokens"],
        "properties": {
            "model": _AGENT_ID,
            "messages": {"type": "array", "items": _ANTHROPIC_MESSAGE},
            "max_tokens": {"type": "integer", "minimum": 1},
            "system": {"type": ["string", "array"]},
            "stream": {"type": "boolean"},
            "tools": {"type": "array", "items": {"type": "object"}},
            "metadata": {"type": "object"},
        },
    },
    "CountTokensRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": _AGENT_ID,
            "messages": {"type": "array", "items": _ANTHROPIC_MESSAGE},
            "system": {"type": ["string", "array"]},
            "tools": {"type": "array", "items": {"type": "object"}},
        },
    },
    # Public answers
    "ChatCompletion": {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "chat.completion"},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {"type": "array", "items": {"type": "object"}},
            "usage": {"type": "object"},
        },
    },
    "Response": {
        "type": "object",
        "required": ["id", "object", "status", "model", "output"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "response"},
            "status": {"type": "string"},
            "model": {"type": "string"},
            "output": {"type": "array", "items": {"type": "object"}},
        },
    },
    "DeletedResponse": {
        "type": "object",
        "required": ["id", "object", "deleted"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string"},
            "deleted": {"const": True},
        },
    },
    "InputItemList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": {"type": "object"}},
            "first_id": {"type": ["string", "null"]},
            "last_id": {"type": ["string", "null"]},
            "has_more": {"type": "boolean"},
        },
    },
    "Message": {
        "type": "object",
        "required": ["id", "type", "role", "content", "model"],
        "properties": {
            "id": {"type": "string"},
            "type": {"const": "message"},
            "role": {"const": "assistant"},
            "content": {"type": "array", "items": {"type": "object"}},
            "model": {"type": "string"},
            "stop_reason": {"type": ["string", "null"]},
            "usage": {"type": "object"},
        },
    },
    "TokenCount": {
        "type": "object",
        "required": ["input_tokens"],
        "properties": {"input_tokens": {"type": "integer", "minimum": 0}},
    },
    "Model": {
        "type": "object",
        "required": ["id", "object"],
        "properties": {"id": {"type": "string"}, "object": {"const": "model"}},
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}},
    },
    "Readiness": {
        "type": "object",
        "required": ["status", "store"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "draining", "unavailable"]},
            "store": {"type": "boolean"},
            "config": {"type": "object"},
        },
    },
    "OpenAPI": {"type": "object", "required": ["openapi", "info", "paths"]},
    # Admin
    "Limits": _LIMITS,
    "Key": {"type": "object", "required": _KEY_REQUIRED, "properties": _KEY_PROPERTIES},
    "KeyWithBalance": {
        "type": "object",
        "required": [*_KEY_REQUIRED, "balance", "held"],
        "properties": {**_KEY_PROPERTIES, "balance": {"type": "integer"}, "held": _COUNT},
    },
    "KeyWithSecret": {
        "type": "object",
        "description": "the record and its secret `key`, shown only in this answer",
        "required": [*_KEY_REQUIRED, "key"],
        "properties": {
            **_KEY_PROPERTIES,
            "key": {"type": "string", "pattern": "^sk-gw-"},
            "balance": {"type": "integer"},
            "warnings": {
                "type": "array",
                "items": {"type": "string"},
                "description": "present when something looks wrong but is allowed, e.g. "
                "an agent no route serves yet",
            },
        },
    },
    "KeyList": {"type": "array", "items": ref("Key")},
    "Team": {"type": "object", "required": _TEAM_REQUIRED, "properties": _TEAM_PROPERTIES},
    "TeamList": {"type": "array", "items": ref("Team")},
    "TeamWithBalance": {
        "type": "object",
        "required": [*_TEAM_REQUIRED, "balance"],
        "properties": {
            **_TEAM_PROPERTIES,
            "balance": {"type": "integer"},
            "held": _COUNT,
            "keys": {"type": "array", "items": {"type": "string"}},
        },
    },
    "CreateTeam": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {**_TEXT, "minLength": 1},
            "balance": {
                **_COUNT,
                "maximum": amounts.MAX_CREDITS,
                "description": "initial credits (1e6 = 1 USD)",
            },
            "limits": ref("Limits"),
            "note": _TEXT,
        },
        "additionalProperties": False,
    },
    "MoveKey": {
        "type": "object",
        "required": ["team"],
        "properties": {
            "team": {"type": ["string", "null"], "description": "a team id; null: no team"}
        },
        "additionalProperties": False,
    },
    "CreateKey": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {**_TEXT, "minLength": 1},
            "balance": {
                **_COUNT,
                "maximum": amounts.MAX_CREDITS,
                "description": "initial credits (1e6 = 1 USD)",
            },
            "agents": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "pattern": "^[^,]+$"},
                "description": "agents the key may call (none: every agent); one that no "
                "route serves is accepted, with a warning",
            },
            "expires_in_seconds": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": key_rules.MAX_LIFETIME_SECONDS,
            },
            "limits": ref("Limits"),
            "note": _TEXT,
            "team": {"type": "string", "description": "a team id: the key spends its balance"},
        },
        "additionalProperties": False,
    },
    "Purge": {
        "type": "object",
        "required": ["id", "purged", "complete"],
        "properties": {
            "id": {"type": "string"},
            "purged": {
                "type": "object",
                "required": ["responses", "a2a_tasks", "a2a_contexts"],
                "properties": {
                    "responses": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "stored responses erased by this call",
                    },
                    "a2a_tasks": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "A2A tasks erased by this call, with their streams",
                    },
                    "a2a_contexts": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "A2A contexts (conversations) erased by this call",
                    },
                },
            },
            "complete": {"type": "boolean", "enum": [True]},
        },
    },
    "RotateKey": {
        "type": "object",
        "properties": {
            "grace_seconds": {
                "type": "number",
                "minimum": 0,
                "description": "how long the replaced secret stays accepted (default 86400)",
            }
        },
        "additionalProperties": False,
    },
    "Credit": {
        "type": "object",
        "required": ["credits"],
        "properties": {
            "credits": {
                "type": "integer",
                "not": {"const": 0},
                "minimum": -amounts.MAX_CREDITS,
                "maximum": amounts.MAX_CREDITS,
            },
            "note": _TEXT,
        },
        "additionalProperties": False,
    },
    "Balance": {
        "type": "object",
        "required": ["id", "balance", "held", "available"],
        "properties": {
            "id": {"type": "string"},
            "balance": {"type": "integer"},
            "held": _COUNT,
            "available": {"type": "integer"},
        },
    },
    "NewBalance": {
        "type": "object",
        "required": ["id", "balance"],
        "properties": {"id": {"type": "string"}, "balance": {"type": "integer"}},
    },
    "LedgerEntry": {
        "type": "object",
        "required": ["id", "kind", "amount", "balance", "at"],
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string", "enum": ["usage", "credit"]},
            "amount": {"type": "integer"},
            "balance": {"type": "integer"},
            "at": {"type": "number"},
            "note": {"type": "string"},
            "key_id": {"type": "string", "description": "in a team's ledger: whose request"},
        },
    },
    "Ledger": {"type": "array", "items": ref("LedgerEntry")},
    "AuditEntry": {
        "type": "object",
        "required": ["id", "at", "actor", "action", "key_id", "details"],
        "properties": {
            "id": {"type": "string"},
            "at": {"type": "number"},
            "actor": {"type": "string", "description": "cli:<user> or admin-api:<address>"},
            "action": {"type": "string", "enum": list(AUDIT_ACTIONS)},
            "key_id": {"type": "string"},
            "details": {"type": "object"},
        },
    },
    "AuditLog": {"type": "array", "items": ref("AuditEntry")},
    "Aggregates": {
        "type": "object",
        "required": ["scope", "period", "buckets", "total", "by_agent", "top_keys"],
        "properties": {
            "scope": {"type": "string", "description": "a key id, or `gateway`"},
            "period": {"type": "string", "enum": ["hour", "day"]},
            "buckets": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["at", "start", *_TOTALS],
                    "properties": {
                        "at": {"type": "integer", "description": "the UTC start, UNIX seconds"},
                        "start": {
                            "type": "string",
                            "examples": ["2026-01-31", "2026-01-31T13:00Z"],
                        },
                        **_TOTALS,
                    },
                },
            },
            "total": {"type": "object", "required": list(_TOTALS), "properties": _TOTALS},
            "by_agent": {
                "type": "array",
                "description": "each agent's totals over the buckets, most credits first",
                "items": {
                    "type": "object",
                    "required": ["agent", *_TOTALS],
                    "properties": {"agent": _AGENT_ID, **_TOTALS},
                },
            },
            "top_keys": {
                "type": "array",
                "description": "the gateway's: the keys that spent most over the days covered",
                "items": {
                    "type": "object",
                    "required": ["id", "credits"],
                    "properties": {"id": {"type": "string"}, "credits": {"type": "integer"}},
                },
            },
        },
    },
    "Runtime": {
        "type": "object",
        "required": ["asyncio_tasks", "active_calls"],
        "properties": {"asyncio_tasks": _COUNT, "active_calls": _COUNT},
    },
}
