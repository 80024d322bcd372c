"""When the store last failed this process, which admission, settlement and the
reaper each take into account."""

from __future__ import annotations

import math
import time

from gateway.store.holds import Holds
from gateway.tasks import BackgroundTasks


class StoreHealth:
    __slots__ = ("_holds", "_tasks", "failed_at")

    def __init__(self, holds: Holds, tasks: BackgroundTasks) -> None:
        self._holds = holds
        self._tasks = tasks
        self.failed_at = -math.inf  # monotonic time the store last failed us

    def failed(self) -> None:
        """Note a failure of the store (a ``ServiceUnavailable`` from ``Holds``)."""
        now = time.monotonic()
        if now - self.failed_at >= 1.0:  # at most once a second
            # Idle connections made before the outage would each fail one request after it.
            self._tasks.spawn(self._holds.reset_idle(), name="reset idle store connections")
        self.failed_at = now

    def failed_within(self, seconds: float) -> bool:
        return time.monotonic() - self.failed_at < seconds
