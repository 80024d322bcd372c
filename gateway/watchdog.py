"""A cheap time limit on each of many waits in one task (a stream's events, its writes).

``asyncio.timeout`` around every wait arms and cancels a timer each time; a
``Watchdog`` keeps one timer per stream: a wait only moves its deadline, and
the timer, when it fires before the current deadline, sleeps again until it.
The expiry works as ``asyncio.timeout``'s does: the waiting task is cancelled,
and ``timed_out`` tells that cancellation from any other.
"""

from __future__ import annotations

import asyncio
import math


class Watchdog:
    """Cancels the waiting task when a wait runs past its deadline.

    Usage: ``dog.wait(deadline)`` before the await, ``dog.deadline = None``
    after it; on ``CancelledError``, ``dog.timed_out()`` says whether it was
    the watchdog's. ``close`` when done.
    """

    __slots__ = ("_cancelling", "_due", "_handle", "_loop", "deadline", "expired", "task")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._due = math.inf
        self._cancelling = 0
        self.deadline: float | None = None
        self.expired = False
        self.task: asyncio.Task[object] | None = None

    def wait(self, deadline: float) -> None:
        """A wait starts in the current task; it may last until ``deadline`` (loop time)."""
        self.deadline = deadline
        self.task = task = asyncio.current_task(self._loop)
        self._cancelling = task.cancelling() if task is not None else 0
        if deadline < self._due:
            self.close()
            self._arm(deadline)

    def timed_out(self) -> bool:
        """After a ``CancelledError`` in the wait: was it this watchdog's (and not another's)?"""
        if not self.expired or self.task is None:
            return False
        return self.task.uncancel() <= self._cancelling

    def expire(self) -> None:
        """End the current wait now, if there is one."""
        if self.deadline is not None:
            self.deadline = -math.inf
            self.close()
            self._check()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle, self._due = None, math.inf

    def _arm(self, when: float) -> None:
        self._handle, self._due = self._loop.call_at(when, self._check), when

    def _check(self) -> None:
        self._handle, self._due = None, math.inf
        deadline = self.deadline
        if deadline is None:  # not waiting: the next wait arms the timer again
            return
        if deadline > self._loop.time():  # events came meanwhile
            self._arm(deadline)
        elif not self.expired and self.task is not None:
            self.expired = True
            self.task.cancel()
