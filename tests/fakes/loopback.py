"""Serving a fake upstream's app on a free loopback port: what every fake shares."""

from __future__ import annotations

import json
from typing import Any

import orjson
from aiohttp import web


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on 127.0.0.1 (a free port); ``(runner, "http://127.0.0.1:PORT")``.

    Handlers are cancelled when their client goes away, so a fake notices a
    disconnect; ``await runner.cleanup()`` stops the server.
    """
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    return runner, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def dumps(value: Any) -> bytes:
    """``value`` as JSON, as an upstream writes it. orjson refuses integers beyond 64 bits,
    which real upstreams can send (Python's ``json`` writes any int): those take ``json``."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()
