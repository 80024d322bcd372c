"""Writing an SSE response: headers once, then frames, each whole, in as few writes as can be.

The frames made from one read of the upstream go out in one write (see
``_Writer``), the last ones with the end of the response; a frame is never split
between writes.

Back-pressure: aiohttp buffers what the socket does not take. Its transport
pauses writing above its high-water mark (64 KiB by default) and
``StreamResponse.write`` awaits the drain once 64 KiB are pending; the stream
holds at most ``BATCH_BYTES`` of frames for the writer before it waits too. So a
client that stops reading leaves a few hundred KiB in memory at most, and the
gateway stops pulling events from the upstream meanwhile (whose own read
buffer then fills, and its socket stops being read). A write that does not
drain within ``limits.client_write_timeout`` seconds ends the stream: the
connection is aborted, the request cancelled and the call settled with what was
delivered.

A stream that fails after its headers went out (a store write the Responses
stream makes before its last event, a bug) cannot answer with an error status
any more: the connection is cut, so that the client sees a broken stream, never
one that looks complete, nor one left waiting for its end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from gateway.errors import GatewayError
from gateway.events import Batch, Completed, Failed
from gateway.server.keys import GATEWAY, REQUEST_ID, app_value
from gateway.watchdog import Watchdog

log = logging.getLogger(__name__)

CLIENT_WRITE_TIMEOUT = 30.0
BATCH_BYTES = 64 * 1024  # frames held for the writer before the stream waits for it
_TERMINAL = (Completed, Failed)


class _HeadersWithFirstWrite(web.StreamResponse):
    """A stream whose headers go out with its first write, in one system call and one
    TCP segment, instead of a write of their own at ``prepare`` (aiohttp's ``Response``
    does the same for a whole body: its ``_send_headers_immediately`` is False too).

    Only for a stream whose first frames are ready when it is prepared (``send_reads``:
    the call has already read up to its first answer), so the headers are never held
    back waiting for the upstream. Saves a write per stream and, at c1, one wake-up of
    the client before its first token. A test holds it to one write, so that an aiohttp
    that no longer reads the attribute is noticed."""

    _send_headers_immediately = False


def _response(
    request: web.Request,
    headers: dict[str, str] | None,
    kind: type[web.StreamResponse] = web.StreamResponse,
) -> web.StreamResponse:
    return kind(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "X-Request-Id": request[REQUEST_ID],
            **(headers or {}),
        }
    )


async def send_sse(
    request: web.Request, frames: AsyncIterator[bytes], headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """Stream ``frames``; a client that goes away or stops reading ends the stream quietly."""
    response = _response(request, headers)
    await response.prepare(request)
    writer = _Writer(request, response, *_write_timeout_and_loop(request))
    try:
        try:
            async for frame in frames:
                await writer.put(frame)
        finally:
            await _close(frames)  # the call stops at once; it settles what was delivered
        await writer.finish()
    except ConnectionResetError:
        log.debug("client went away during request %s", request[REQUEST_ID])
    except _Stalled:
        pass  # logged, and the connection aborted, by the writer
    except GatewayError as exc:
        log.warning("stream of request %s broke off: %s", request[REQUEST_ID], exc.message)
        _cut(request, response)
    except Exception:
        log.exception("stream of request %s broke off", request[REQUEST_ID])
        _cut(request, response)
    finally:
        writer.cancel()
    return response


async def send_reads(
    request: web.Request,
    batches: AsyncIterator[Batch],
    render: Callable[[Batch], bytes],
    head: bytes = b"",
    headers: dict[str, str] | None = None,
    keep: Callable[[], Awaitable[None]] | None = None,
) -> web.StreamResponse:
    """``send_sse`` for a call's batches, each one read of the upstream: its frames
    (``render``) are already one write's worth, so they go out at once from this task,
    without ``send_sse``'s writer task and its wake-up per read. ``head`` goes with
    the first batch's frames; the terminal batch's, with the end of the response
    (the call ends right after it, without a wait). ``keep`` runs after
    the terminal batch is rendered, before its frames go out. ``batches`` is left for
    the caller to close."""
    response = _response(request, headers, _HeadersWithFirstWrite)
    await response.prepare(request)
    timeout, loop = _write_timeout_and_loop(request)
    dog = Watchdog(loop)  # one timer per stream for every write's time limit
    pending = head
    try:
        async for batch in batches:
            frame = render(batch)
            if pending:
                frame, pending = pending + frame, b""
            if batch and isinstance(batch[-1], _TERMINAL):
                if keep is not None:
                    await keep()
                pending = frame  # written with the end, once the call has ended
            elif frame:
                dog.wait(loop.time() + timeout)
                try:
                    await response.write(frame)
                except asyncio.CancelledError:
                    if not dog.timed_out():
                        raise
                    _stalled(request, response, timeout)
                finally:
                    dog.deadline = None
        dog.wait(loop.time() + timeout)
        try:
            await response.write_eof(pending)
        except asyncio.CancelledError:
            if not dog.timed_out():
                raise
            _stalled(request, response, timeout)
        finally:
            dog.deadline = None
    except ConnectionResetError:
        log.debug("client went away during request %s", request[REQUEST_ID])
    except _Stalled:
        pass  # logged, and the connection aborted
    except GatewayError as exc:
        log.warning("stream of request %s broke off: %s", request[REQUEST_ID], exc.message)
        _cut(request, response)
    except Exception:
        log.exception("stream of request %s broke off", request[REQUEST_ID])
        _cut(request, response)
    finally:
        dog.close()
    return response


def _cut(request: web.Request, response: web.StreamResponse) -> None:
    """End the connection now: what was not sent yet is dropped, and the request cancelled."""
    response.force_close()
    if request.transport is not None:
        request.transport.abort()


class _Stalled(Exception):
    pass


def _stalled(request: web.Request, response: web.StreamResponse, timeout: float) -> None:
    log.info(
        "client stopped reading for %gs during request %s; ending its stream",
        timeout,
        request[REQUEST_ID],
    )
    _cut(request, response)
    raise _Stalled from None


class _Writer:
    """Writes the frames made in one burst in one write, in a task of its own.

    Frames made from one read of the upstream come one after another without a
    wait; the writer task runs when the stream next waits (for the upstream),
    and writes every frame made since as one. A client that does not take a
    write within ``timeout`` seconds is cut off: the connection is aborted,
    which cancels the request (and so settles the call).
    """

    def __init__(
        self,
        request: web.Request,
        response: web.StreamResponse,
        timeout: float,
        loop: asyncio.AbstractEventLoop,
    ):
        self._request = request
        self._response = response
        self._timeout = timeout
        self._frames: list[bytes] = []
        self._size = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._closing = False
        self._error: BaseException | None = None
        self._loop = loop
        # Each write's time limit (``asyncio.timeout`` would arm and cancel a timer per
        # write; a watchdog keeps one per stream), whichever task writes.
        self._dog = Watchdog(loop)
        self._task = loop.create_task(self._run())

    async def put(self, frame: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._frames.append(frame)
        self._size += len(frame)
        self._wake.set()
        if self._size >= BATCH_BYTES:  # the writer is behind (a slow client): wait for it
            self._room.clear()
            await self._room.wait()
            if self._error is not None:
                raise self._error

    async def finish(self) -> None:
        """Write what is left with the end of the response, in one write."""
        self._closing = True
        self._wake.set()
        await self._task  # its write in progress, if any, ends first
        if self._error is not None:
            raise self._error
        rest, self._frames = b"".join(self._frames), []
        await self._write(self._response.write_eof(rest))

    def cancel(self) -> None:
        self._task.cancel()
        self._dog.close()

    async def _run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._closing:
                    return  # ``finish`` writes the rest with the end of the response
                if not self._frames:
                    continue
                frames, self._frames, self._size = self._frames, [], 0
                self._room.set()
                await self._write(self._response.write(b"".join(frames)))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._error = exc
        finally:
            self._room.set()

    async def _write(self, write: Awaitable[None]) -> None:
        dog = self._dog
        dog.wait(self._loop.time() + self._timeout)
        try:
            await write
        except asyncio.CancelledError:
            if not dog.timed_out():
                raise
            _stalled(self._request, self._response, self._timeout)
        finally:
            dog.deadline = None


def _write_timeout_and_loop(request: web.Request) -> tuple[float, asyncio.AbstractEventLoop]:
    """How long a write to the client may wait (``limits.client_write_timeout``, or
    ``CLIENT_WRITE_TIMEOUT`` without a gateway), and the running loop: the gateway's own
    (``Gateway.loop``, without ``asyncio.get_running_loop``'s system call) when the
    application has one."""
    gateway = app_value(request, GATEWAY)
    if gateway is None:
        return CLIENT_WRITE_TIMEOUT, asyncio.get_running_loop()
    return gateway.config.limits.client_write_timeout, gateway.loop()


async def _close(frames: AsyncIterator[bytes]) -> None:
    aclose = getattr(frames, "aclose", None)
    if aclose is not None:
        await aclose()
