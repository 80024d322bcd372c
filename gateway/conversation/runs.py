"""Background responses: run detached from any client, streamed through Redis, resumed, cancelled.

A background response runs in a tracked task (``Run``) that writes its progress
to Redis (``gateway.store.response_runs``): with ``stream``, every event goes to
the response's event stream, and every client, the one that created it
included, reads the events from there (``resumable``, ``events_after``, then
``follow``), from whichever gateway process it reaches. A client that leaves
stops nothing.

A cancel (``cancel``), from any process, sets the response's cancel flag; the
run sees it at its next write or heartbeat, stops its upstream call (settled
like a client disconnect: billed for what was produced) and ends the response
``cancelled``. A run whose process died is finished by the canceller itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway import sse
from gateway.conversation.context import load
from gateway.dialects.responses_output import Json
from gateway.dialects.responses_render import ResponseBuilder
from gateway.errors import InvalidRequest, NotFound, ServiceUnavailable
from gateway.pipeline import Call, Gateway
from gateway.store import ApiKey
from gateway.store.response_runs import (
    HEARTBEAT_SECONDS,
    LEASE_SECONDS,
    Mode,
    ResponseRuns,
    State,
    StreamEvent,
    new_token,
)
from gateway.store.responses import TERMINAL, StoredResponse
from gateway.wire.fields import invalid

log = logging.getLogger(__name__)

TERMINAL_EVENTS = ("response.completed", "response.failed", "response.incomplete")
CANCEL_POLL_SECONDS = 0.05  # how often a cancel looks whether the run has stopped
_STOPS = ("cancel", "lost", "gone")


class Run:
    """One background response, run to its end in a tracked task (``main``)."""

    def __init__(
        self,
        gateway: Gateway,
        key: ApiKey,
        call: Call,
        builder: ResponseBuilder,
        context: list[dict[str, Any]],
        *,
        streamed: bool,
        retention_ms: int,
    ) -> None:
        self._runs = gateway.response_runs
        self._retention_ms = retention_ms  # the agent's StoragePolicy's, when it started
        self._key_id = key.id
        self._call = call
        self._builder = builder
        self._context = context
        self._streamed = streamed
        self._token = new_token()
        self._log = self._runs.log()
        self._stop: State | None = None  # why the run must end early
        self._waiting = False  # awaiting the upstream: a stop cancels the wait
        self._finishing = False
        self._wrote = 0.0  # loop time of the last write (each one renews the lease)

    async def begin(self) -> None:
        """Store the response in progress (and, streamed, its first events); hold the run."""
        await self._write("begin", self._builder.start() if self._streamed else [], True)

    async def main(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        watch = asyncio.ensure_future(self._watch(task))
        try:
            async with self._call:  # closing it settles what was produced
                await self._pump()
        except asyncio.CancelledError:
            if self._stop is None:
                raise
            task.uncancel()  # our own stop, while the upstream was awaited
        finally:
            watch.cancel()
        if self._builder.finished or self._stop != "cancel":
            if self._stop in ("lost", "gone"):
                log.info("background response %s: %s", self._builder.response_id, self._stop)
            return
        self._finishing = True
        events = self._builder.cancel(self._call.hold.usage())
        await self._write("final", events, True)

    async def _pump(self) -> None:
        batches = aiter(self._call)
        while self._stop is None:
            self._waiting = True
            try:
                batch = await anext(batches)
            except StopAsyncIteration:
                return
            finally:
                self._waiting = False
            out = [json for event in batch for json in self._builder.feed(event)]
            if self._builder.finished:
                self._finishing = True
                await self._write("final", out, True)
                return
            if out:
                self._saw(await self._write("step", out), None)

    async def _watch(self, task: asyncio.Task[Any]) -> None:
        """Renew the lease and look for a cancel while nothing else is written."""
        loop = asyncio.get_running_loop()
        while not self._finishing:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            if self._finishing or loop.time() - self._wrote < HEARTBEAT_SECONDS:
                continue
            try:
                state = await self._write("step", [])
            except ServiceUnavailable:
                continue  # logged by the store; the lease outlives a short outage
            if not self._finishing:
                self._saw(state, task)

    def _saw(self, state: State, task: asyncio.Task[Any] | None) -> None:
        if state in _STOPS and self._stop is None:
            self._stop = state
            if task is not None and self._waiting:
                task.cancel()  # stops the upstream call; ``main`` takes it from there

    async def _write(self, mode: Mode, events: list[Json], with_response: bool = False) -> State:
        encoded = []
        for event in events:
            data = orjson.dumps(event)
            self._log.add(len(data))
            encoded.append((event["sequence_number"], event["type"], data))
        stored = StoredResponse(self._builder.response, self._context) if with_response else None
        state = await self._runs.write(
            self._key_id,
            self._builder.response_id,
            self._token,
            mode,
            self._retention_ms,
            encoded,
            stored,
            self._log.min_id(),
        )
        self._wrote = asyncio.get_running_loop().time()
        return state


async def resumable(gateway: Gateway, key: ApiKey, response_id: str) -> None:
    """Raise a 400 unless the response keeps its events to stream (background and stream)."""
    if not await gateway.response_runs.streamed(key.id, response_id):
        raise invalid(
            "stream",
            "this response keeps no events to stream: only a response created with "
            "'background' and 'stream' does (while it is stored).",
        )


async def events_after(
    gateway: Gateway, key: ApiKey, response_id: str, after: int
) -> list[StreamEvent]:
    """The buffered events after sequence number ``after`` (read while holding a
    ``following`` slot); a point no longer buffered is a 400 before any event."""
    runs = gateway.response_runs
    first = await runs.read(key.id, response_id, after, block=False)
    if first and first[0].seq != after + 1:
        raise InvalidRequest(
            f"Invalid 'starting_after': the events after {after} are no longer buffered "
            f"(a response keeps its latest {runs.settings.events_max} events, "
            f"{runs.settings.events_max_bytes} bytes at most); the earliest kept is "
            f"{first[0].seq}: resume from {first[0].seq - 1} or later, or GET the "
            "response without 'stream'.",
            param="starting_after",
            code="events_expired",
        )
    return first


async def follow(
    gateway: Gateway, key: ApiKey, response_id: str, after: int, events: list[StreamEvent]
) -> AsyncIterator[bytes]:
    """SSE frames: ``events`` (those after ``after``), then what follows, to the end."""
    runs = gateway.response_runs
    last = after
    while True:
        if events:
            if events[0].seq != last + 1:  # this reader fell behind the buffer
                raise ServiceUnavailable(f"stream of {response_id} fell behind its buffer")
            last = events[-1].seq
            yield b"".join(sse.event_frame(e.type, e.data.encode()) for e in events)
            if events[-1].type in TERMINAL_EVENTS:
                yield sse.DONE
                return
        elif not await runs.running(key.id, response_id):
            # Ended (its last events were read already) or its process died.
            events = await runs.read(key.id, response_id, last, block=False)
            if events:
                continue
            stored = await gateway.responses.load(key.id, response_id)
            if stored is not None and stored.response["status"] in TERMINAL:
                yield sse.DONE
                return
            # The client sees a cut stream, and can resume once the response is cancelled.
            raise ServiceUnavailable(f"the run of {response_id} stopped without ending it")
        events = await runs.read(key.id, response_id, last, block=True)


async def cancel(gateway: Gateway, key: ApiKey, response_id: str) -> Json:
    """Cancel a background response in progress; its object once it has stopped."""
    runs = gateway.response_runs
    stored = await load(gateway, key, response_id, "response_id")
    if not stored.response.get("background"):
        raise InvalidRequest("Cannot cancel a synchronous response.", param="response_id")
    if stored.response["status"] in TERMINAL:
        return _cancelled(stored)
    running = await runs.request_cancel(key.id, response_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LEASE_SECONDS + 1
    while True:
        if not running:  # no process runs it (it died): finish it here
            token = new_token()
            if await runs.claim(key.id, response_id, token):
                retention_ms = gateway.storage(stored.response["model"]).retention_ms
                return await _finish_orphan(runs, key, stored, token, retention_ms)
        await asyncio.sleep(CANCEL_POLL_SECONDS)
        stored = await load(gateway, key, response_id, "response_id")
        if stored.response["status"] in TERMINAL:
            return _cancelled(stored)
        if loop.time() > deadline:  # the run has not stopped yet; it will
            return stored.response
        running = await runs.running(key.id, response_id)


def _cancelled(stored: StoredResponse) -> Json:
    """A response that ended: itself if cancelled; a 400 as OpenAI answers otherwise."""
    status = stored.response["status"]
    if status == "cancelled":
        return stored.response
    article = "an" if status == "incomplete" else "a"
    raise InvalidRequest(f"Cannot cancel {article} {status} response.", param="response_id")


async def _finish_orphan(
    runs: ResponseRuns, key: ApiKey, stored: StoredResponse, token: str, retention_ms: int
) -> Json:
    """End, as cancelled, a response whose process died (its bill was settled by the
    metering reaper); its stream ends with ``response.failed`` as a live run's would."""
    response_id = stored.response["id"]
    response = {**stored.response, "status": "cancelled"}
    events: list[tuple[int, str, bytes]] = []
    if await runs.streamed(key.id, response_id):
        seq = await runs.last_seq(key.id, response_id) + 1
        event: Json = {"type": "response.failed", "sequence_number": seq, "response": response}
        events.append((seq, "response.failed", orjson.dumps(event)))
    kept = StoredResponse(response, stored.input)
    state = await runs.write(key.id, response_id, token, "final", retention_ms, events, kept)
    if state == "gone":
        raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
    return response
