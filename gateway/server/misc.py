"""``GET /v1/models`` (and one model, and LibreChat's ``/responses/models``), and the
health endpoints."""

from __future__ import annotations

import time

from aiohttp import web

from gateway import metrics as prometheus
from gateway.errors import NotFound
from gateway.server.body import json_response
from gateway.server.keys import API_KEY, GATEWAY, WATCHER

_STARTED = int(time.time())


async def models(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    key = request[API_KEY]
    data = [_model(agent) for agent in gateway.agents(key)]
    return json_response({"object": "list", "data": data})


async def model(request: web.Request) -> web.Response:
    """One agent this key may call; any other is 404, as OpenAI and LibreChat answer."""
    gateway = request.app[GATEWAY]
    key = request[API_KEY]
    agent = request.match_info["model"]
    if agent not in gateway.agents(key):
        raise NotFound(f"The model '{agent}' does not exist.", code="model_not_found")
    return json_response(_model(agent))


def _model(agent: str) -> dict[str, object]:
    return {"id": agent, "object": "model", "created": _STARTED, "owned_by": "gateway"}


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the store answers and the gateway is not draining; and the active
    configuration (its hash, when it was loaded, and why a newer file was refused)."""
    gateway = request.app[GATEWAY]
    store = await gateway.store.ping()
    ready = store and not gateway.draining
    status = "ok" if ready else ("draining" if gateway.draining else "unavailable")
    body = {"status": status, "store": store, "config": request.app[WATCHER].status()}
    return json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics (``gateway.metrics``), summed over workers in multiprocess mode."""
    body, content_type = prometheus.exposition(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})
