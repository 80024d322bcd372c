"""Background work that must finish even when the request that started it ends.

``spawn`` keeps a reference to each task (a bare ``asyncio.create_task`` can be
garbage-collected mid-flight) and ``drain`` awaits them at shutdown. A client
disconnect cancels its handler, never these tasks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        """Run ``coro`` to the end; await the task through ``asyncio.shield`` to wait for it."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def hold(self, future: asyncio.Future[Any]) -> None:
        """Have ``drain`` wait for ``future`` too, until ``release``: work already under
        way without a task of its own (a write queued for the store's next round trip),
        whose own done callback handles its result and its failure and ends with
        ``release(future)``. (Not a done callback of this class's: one callback per
        settlement instead of two.)"""
        self._tasks.add(future)

    def release(self, future: asyncio.Future[Any]) -> None:
        """``future``, held by ``hold``, is done: ``drain`` no longer waits for it."""
        self._tasks.discard(future)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait for every task, including ones spawned while waiting."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._tasks:
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            _, pending = await asyncio.wait(set(self._tasks), timeout=remaining)
            if pending and deadline is not None and loop.time() >= deadline:
                log.error("shutdown: %d background tasks did not finish", len(pending))
                return
