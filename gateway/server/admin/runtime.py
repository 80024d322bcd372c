"""The admin API's view of this process: its asyncio tasks and calls in flight."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.server.admin.request import gateway_of
from gateway.server.body import json_response


async def runtime(request: web.Request) -> web.Response:
    """What a soak test watches for leaks besides memory and descriptors."""
    gateway = gateway_of(request)
    return json_response(
        {"asyncio_tasks": len(asyncio.all_tasks()), "active_calls": gateway.active_calls}
    )
