"""A cheap time limit on each of many waits in one task (a stream's events, its writes).

``asyncio.timeout`` around every wait arms and cancels a timer each time; a
``Watchdog`` only moves its deadline. The watchdogs of one event loop share one
timer (``_Clock``), armed at the earliest deadline of those waiting: a stream
that starts after another (whose deadline is later, as with equal limits)
arms nothing, and one that ends cancels nothing. When the timer fires, each
watchdog past its deadline expires, and the timer sleeps again until the
earliest deadline left. (In uvloop a timer armed and cancelled costs about as
much as the rest of a stream's contract check.)
The expiry works as ``asyncio.timeout``'s does: the waiting task is cancelled,
and ``timed_out`` tells that cancellation from any other.
"""

from __future__ import annotations

import asyncio
import math
import weakref


class _Clock:
    """One loop's timer for all its watchdogs, armed at the earliest deadline of
    those waiting (``dogs``: those that may be; one with no deadline is dropped
    when the timer next fires, or when closed)."""

    __slots__ = ("__weakref__", "_handle", "dogs", "due", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dogs: set[Watchdog] = set()
        self._handle: asyncio.TimerHandle | None = None
        self.due = math.inf  # when the timer fires (none armed: infinity)

    def arm(self, deadline: float) -> None:
        """Wake at ``deadline``, earlier than the timer would have."""
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self.due = self.loop.call_at(deadline, self._fire), deadline

    def _fire(self) -> None:
        self._handle, self.due = None, math.inf
        now, earliest = self.loop.time(), math.inf
        for dog in list(self.dogs):
            deadline = dog.deadline
            if deadline is None:  # not waiting: its next wait registers it again
                self.dogs.discard(dog)
            elif deadline <= now:
                self.dogs.discard(dog)
                dog.fire()
            elif deadline < earliest:  # events came meanwhile
                earliest = deadline
        if earliest < math.inf:
            self._handle, self.due = self.loop.call_at(earliest, self._fire), earliest


_current_task = asyncio.current_task

# Each loop's clock, by the loop's id, for as long as a watchdog or its timer keeps it
# (weakly: a clock holds its loop, so a registry holding clocks would keep every loop
# ever used alive; an id is not reused while its clock, and so its loop, lives).
_CLOCKS: weakref.WeakValueDictionary[int, _Clock] = weakref.WeakValueDictionary()


def _clock(loop: asyncio.AbstractEventLoop) -> _Clock:
    clock = _CLOCKS.get(id(loop))
    if clock is None:
        clock = _CLOCKS[id(loop)] = _Clock(loop)
    return clock


class Watchdog:
    """Cancels the waiting task when a wait runs past its deadline.

    Usage: ``dog.wait(deadline)`` before the await, ``dog.deadline = None``
    after it; on ``CancelledError``, ``dog.timed_out()`` says whether it was
    the watchdog's. ``close`` when done.
    """

    __slots__ = ("_cancelling", "_clock", "deadline", "expired", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """``loop``: the running loop, if the caller has it at hand (else looked up: in
        Python 3.11 ``get_running_loop`` makes a ``getpid`` system call each time)."""
        self._clock = _clock(loop or asyncio.get_running_loop())
        self._cancelling = 0
        self.deadline: float | None = None
        self.expired = False
        self.task: asyncio.Task[object] | None = None

    def wait(self, deadline: float) -> None:
        """A wait starts in the current task; it may last until ``deadline`` (loop time)."""
        self.deadline = deadline
        clock = self._clock
        self.task = task = _current_task(clock.loop)
        self._cancelling = task.cancelling() if task is not None else 0
        clock.dogs.add(self)
        if deadline < clock.due:  # the shared timer would wake too late for this one
            clock.arm(deadline)

    def timed_out(self) -> bool:
        """After a ``CancelledError`` in the wait: was it this watchdog's (and not another's)?"""
        if not self.expired or self.task is None:
            return False
        return self.task.uncancel() <= self._cancelling

    def expire(self) -> None:
        """End the current wait now, if there is one."""
        if self.deadline is not None:
            self.deadline = -math.inf
            self.fire()

    def close(self) -> None:
        """No more waits: the shared timer forgets this watchdog."""
        self._clock.dogs.discard(self)

    def fire(self) -> None:
        """The current wait is past its deadline: cancel the waiting task (once)."""
        if not self.expired and self.task is not None:
            self.expired = True
            self.task.cancel()
