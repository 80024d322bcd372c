"""The admin API's audit log: the latest admin actions, newest first."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import InvalidRequest
from gateway.server.admin.request import gateway_of
from gateway.server.body import json_response, whole_number

MAX_AUDIT_LIMIT = 10_000


async def audit(request: web.Request) -> web.Response:
    limit = whole_number(request.query.get("limit", "100"))
    if limit is None or not 1 <= limit <= MAX_AUDIT_LIMIT:
        raise InvalidRequest(
            f"limit must be a whole number from 1 to {MAX_AUDIT_LIMIT}", param="limit"
        )
    entries = await gateway_of(request).store.audit_log(limit=limit)
    return json_response([e.to_json() for e in entries])
