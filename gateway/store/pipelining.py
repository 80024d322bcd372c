"""Commands of concurrent requests share one Redis round trip.

Each request admits and settles with a few commands of its own; under load
many requests queue theirs in the same turn of the event loop. ``Pipeliner``
sends everything queued as one pipeline on one connection, one pipeline at a
time (so commands reach Redis in the order they were queued), and hands each
caller its own results or its own error. A caller that gave up before its
commands were sent (cancelled) sends nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redis import asyncio as aioredis

Step = Callable[[Any], Awaitable[Any]]
"""Queues one command on the client it is given (a pipeline here)."""

_Queued = tuple[list[Step], "asyncio.Future[list[Any]]"]


class Pipeliner:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._queued: list[_Queued] = []
        self._sender: asyncio.Task[None] | None = None

    async def run(self, steps: list[Step]) -> list[Any]:
        """The results of ``steps``, in order; the first error among them is raised."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queued.append((steps, future))
        if self._sender is None:
            # Starts on the next turn of the loop: callers of this turn join its pipeline.
            self._sender = asyncio.ensure_future(self._send_all())
        return await future

    async def _send_all(self) -> None:
        try:
            while self._queued:
                queued, self._queued = self._queued, []
                await self._send([q for q in queued if not q[1].done()])
        finally:
            self._sender = None
            for _, future in self._queued:  # only if this task itself was cancelled
                future.cancel()
            self._queued = []

    async def _send(self, queued: list[_Queued]) -> None:
        if not queued:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for steps, _ in queued:
                for step in steps:
                    await step(pipe)  # with a pipeline as client, this only queues it
            results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the round trip failed: every caller in it fails
            for _, future in queued:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:
            for _, future in queued:
                future.cancel()
            raise
        at = 0
        for steps, future in queued:
            mine = results[at : at + len(steps)]
            at += len(steps)
            if future.done():
                continue
            error = next((r for r in mine if isinstance(r, Exception)), None)
            if error is None:
                future.set_result(mine)
            else:
                future.set_exception(error)
