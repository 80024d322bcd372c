"""A2A 1.0's JSON-RPC binding as a ``Methods`` dialect: one endpoint, many methods.

``parse`` reads the JSON-RPC envelope and refuses a method A2A 1.0 does not have
(0.3's slash names get the 1.0 name in the message, and the methods of a
capability the card does not declare the error the spec names for it); every answer, whole or as SSE
frames, is a JSON-RPC response with the request's id; a method's error is a
JSON-RPC error with A2A's codes, answered with HTTP 200, while an error of the HTTP
request itself (no such agent for this key, a body too large or too slow) keeps its
status, with a JSON-RPC error as the body. The operations are
``gateway.server.a2a``'s.
"""

from __future__ import annotations

import orjson

from gateway import sse
from gateway.dialects import a2a_wire as wire
from gateway.dialects.request_limits import RequestLimits
from gateway.errors import GatewayError

# The errors of the HTTP request itself, answered with their status by the middleware.
AGENT_NOT_FOUND = "agent_not_found"
_HTTP_STATUSES = (408, 413)


class A2ADialect:
    name = "a2a"

    def parse(self, body: object, limits: RequestLimits) -> wire.RpcRequest:
        req = wire.rpc_request(body)
        if req.method not in wire.METHODS:
            unsupported = wire.UNSUPPORTED_METHODS.get(req.method)
            if unsupported is not None:
                code, what = unsupported
                message = f"{what}: not supported by this agent (its card says so)."
                raise wire.A2AError(code, message, rpc_id=req.id)
            instead = wire.V03_METHODS.get(req.method)
            hint = f" (A2A 0.3's name: this agent speaks 1.0, '{instead}')" if instead else ""
            raise wire.A2AError(
                wire.METHOD_NOT_FOUND, f"Method '{req.method}' not found{hint}.", rpc_id=req.id
            )
        return req

    def method(self, parsed: wire.RpcRequest) -> str:
        return parsed.method

    def result(self, parsed: wire.RpcRequest, value: object) -> bytes:
        return orjson.dumps(wire.result(parsed.id, value))

    def frame(self, parsed: wire.RpcRequest, value: object) -> bytes:
        return sse.data_frame(orjson.dumps(wire.result(parsed.id, value)))

    def failure(
        self, parsed: wire.RpcRequest | None, error: GatewayError
    ) -> tuple[int, bytes] | None:
        if error.status in _HTTP_STATUSES or error.code == AGENT_NOT_FOUND:
            return None
        if parsed is not None:
            rid = parsed.id
        elif isinstance(error, wire.A2AError):
            rid = error.rpc_id  # an envelope read as far as its id
        else:  # the body is not JSON (or could not be read): JSON-RPC's parse error
            rid, error = None, wire.A2AError(wire.PARSE_ERROR, error.message)
        return 200, orjson.dumps(wire.error(rid, error))

    def error(self, error: GatewayError, request_id: str) -> tuple[int, bytes]:
        return wire.error_body(error, request_id)


A2A = A2ADialect()
