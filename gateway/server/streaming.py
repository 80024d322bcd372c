"""Writing an SSE response: headers once, then each frame whole in one write.

Back-pressure: aiohttp buffers what the socket does not take. Its transport
pauses writing above its high-water mark (64 KiB by default) and
``StreamResponse.write`` awaits the drain once 64 KiB are pending, so a client
that stops reading leaves at most about 128 KiB plus one frame in memory,
and the gateway stops pulling events from the upstream meanwhile (whose own
read buffer then fills, and its socket stops being read). A write that does
not drain within ``limits.client_write_timeout`` seconds ends the stream: the
frames' generator is closed (so the call settles what was delivered) and the
connection is aborted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.server.keys import GATEWAY, REQUEST_ID
from gateway.watchdog import Watchdog

log = logging.getLogger(__name__)

CLIENT_WRITE_TIMEOUT = 30.0


async def send_sse(
    request: web.Request, frames: AsyncIterator[bytes], headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """Stream ``frames``; a client that goes away or stops reading ends the stream quietly."""
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
    timeout = write_timeout(request)
    loop = asyncio.get_running_loop()
    dog = Watchdog()  # a write that does not drain within ``timeout`` is a stalled client
    try:
        try:
            async for frame in frames:
                dog.wait(loop.time() + timeout)
                await response.write(frame)
                dog.deadline = None
        finally:
            await _close(frames)  # the call stops at once; it settles what was delivered
        dog.wait(loop.time() + timeout)
        await response.write_eof()
        dog.deadline = None
    except ConnectionResetError:
        log.debug("client went away during request %s", request[REQUEST_ID])
    except asyncio.CancelledError:
        if not dog.timed_out():
            raise
        log.info(
            "client stopped reading for %gs during request %s; ending its stream",
            timeout,
            request[REQUEST_ID],
        )
        response.force_close()
        if request.transport is not None:
            request.transport.abort()  # drops the unsent buffer; no further write can block
    finally:
        dog.close()
    return response


def write_timeout(request: web.Request) -> float:
    gateway = request.config_dict.get(GATEWAY)
    return gateway.config.limits.client_write_timeout if gateway else CLIENT_WRITE_TIMEOUT


async def _close(frames: AsyncIterator[bytes]) -> None:
    aclose = getattr(frames, "aclose", None)
    if aclose is not None:
        await aclose()
