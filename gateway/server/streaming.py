"""Writing an SSE response: headers once, then each frame whole in one write."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.server.keys import REQUEST_ID

log = logging.getLogger(__name__)


async def send_sse(
    request: web.Request, frames: AsyncIterator[bytes], headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """Stream ``frames``; a client that goes away ends the stream quietly."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "X-Request-Id": request[REQUEST_ID],
            **(headers or {}),
        }
    )
    await response.prepare(request)
    try:
        async for frame in frames:
            await response.write(frame)
        await response.write_eof()
    except ConnectionResetError:
        log.debug("client went away during request %s", request[REQUEST_ID])
    return response
