"""The OpenAI error body, shared by Chat Completions and Open Responses."""

from __future__ import annotations

import orjson

from gateway.errors import GatewayError


def error_object(error: GatewayError) -> dict[str, object]:
    return {
        "message": error.message,
        "type": error.type,
        "param": error.param,
        "code": error.code,
    }


def error_body(error: GatewayError) -> bytes:
    return orjson.dumps({"error": error_object(error)})
