"""The outbox: settlements Redis could not take, written in order when it answers again.

A settlement that fails because the store is unreachable is queued here, in
memory, and a background task (tracked, so shutdown waits for it) writes the
queue front to back, backing off while Redis stays away. Writing the same
settlement twice is harmless: the settle script refuses a charge id it has
already settled, so a write whose answer was lost (a timeout after Redis
applied it) is simply retried. The queue is bounded; a settlement that does not
fit is logged as an error with everything needed to reconcile it by hand.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.errors import ServiceUnavailable
from gateway.tasks import BackgroundTasks

log = logging.getLogger(__name__)

FIRST_BACKOFF = 0.05
MAX_BACKOFF = 2.0


@dataclass(slots=True)
class Pending:
    """One write waiting for Redis: ``write`` is safe to run more than once."""

    charge_id: str
    what: str  # for the log: the request, key and credits
    write: Callable[[], Awaitable[object]]
    dropped: Callable[[], None] | None = None  # called when it is given up


class Outbox:
    def __init__(
        self,
        tasks: BackgroundTasks,
        size: int,
        *,
        before: Callable[[], Awaitable[object]] | None = None,
        on_failure: Callable[[], None] | None = None,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self._tasks = tasks
        self._size = size
        self._before = before  # run before each drain pass (renew leases first)
        self._on_failure = on_failure
        self._max_backoff = max_backoff
        self._queue: deque[Pending] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, item: Pending) -> bool:
        """Queue ``item`` behind the others; False (and an error logged) if the outbox is full."""
        if len(self._queue) >= self._size:
            self._drop(item, f"the outbox is full ({self._size} waiting)")
            return False
        self._queue.append(item)
        if self._drainer is None or self._drainer.done():
            self._drainer = self._tasks.spawn(self._drain(), name="settlement outbox")
        return True

    async def _drain(self) -> None:
        delay = FIRST_BACKOFF
        fresh = True  # the store has just answered again, or this is the first pass
        while self._queue:
            item = self._queue[0]
            try:
                if fresh and self._before is not None:
                    try:
                        await self._before()
                    except ServiceUnavailable:
                        raise
                    except Exception:  # renewing is a courtesy: never drop a write for it
                        log.exception("outbox: lease renewal failed")
                fresh = False
                await item.write()
            except ServiceUnavailable:
                if self._on_failure is not None:
                    self._on_failure()
                fresh = True
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self._max_backoff)
                continue
            except Exception:  # a bug in one write must not hold up the rest
                log.exception("outbox: %s failed", item.what)
                self._queue.popleft()
                self._drop(item, "its write failed")
                continue
            self._queue.popleft()
            self.written += 1
            delay = FIRST_BACKOFF
        log.info("outbox: drained (%d written so far)", self.written)

    def abandon(self) -> None:
        """At exit: log every settlement still waiting (Redis never came back in time)."""
        while self._queue:
            self._drop(self._queue.popleft(), "the process is exiting and Redis is unreachable")

    def _drop(self, item: Pending, why: str) -> None:
        self.dropped += 1
        log.error(
            "settlement NOT written (%s): %s, charge %s. If its hold survives in Redis, "
            "the reaper settles it at the request's last recorded progress.",
            why,
            item.what,
            item.charge_id,
        )
        if item.dropped is not None:
            item.dropped()
