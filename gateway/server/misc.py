"""``GET /v1/models`` and the health endpoints."""

from __future__ import annotations

import time

from aiohttp import web

from gateway.server.body import json_response
from gateway.server.keys import GATEWAY

_STARTED = int(time.time())


async def models(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    key = await gateway.auth.authenticate(request.headers.get("Authorization"))
    data = [
        {"id": agent, "object": "model", "created": _STARTED, "owned_by": "gateway"}
        for agent in gateway.agents(key)
    ]
    return json_response({"object": "list", "data": data})


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the store answers."""
    ready = await request.app[GATEWAY].store.ping()
    return json_response(
        {"status": "ok" if ready else "unavailable", "store": ready},
        status=200 if ready else 503,
    )
