"""A circuit breaker per backend: stop sending to a backend that keeps failing.

Closed: requests flow; ``failures`` consecutive failures open it. Open: no
requests for ``cooldown`` seconds. Then one probe request is let through
(half-open): its success closes the circuit, its failure opens it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.config import BreakerSettings


class CircuitBreaker:
    def __init__(
        self, settings: BreakerSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._failures = 0
        self._open_until: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._open_until is None:
            return "closed"
        return "half-open" if self._probing else "open"

    def allow(self) -> bool:
        """Whether a request may go to the backend now (claims the probe when half-open)."""
        if self._open_until is None:
            return True
        if self._probing or self._clock() < self._open_until:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        self._failures = 0
        self._open_until = None
        self._probing = False

    def failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self._settings.failures:
            self._open_until = self._clock() + self._settings.cooldown
        self._probing = False

    def release(self) -> None:
        """The request ended without telling (e.g. its client left): let another probe."""
        self._probing = False
