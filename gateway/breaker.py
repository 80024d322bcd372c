"""A circuit breaker per backend: stop sending to a backend that keeps failing,
without letting one caller stop it for everyone.

A failure is what the backend did wrong (a 5xx, a timeout, a connection
failure before the first event); an answer that blames the request (400, 413,
422) is not one, nor is a 429 (busy, not broken). Failures are counted per
API key as well as per backend:

- **The backend's circuit** opens after ``failures`` failures in a row (no
  success from any key in between) that came from at least two keys. Then no
  key's requests go to the backend for ``cooldown`` seconds; then one probe
  request is let through (half-open): its success closes the circuit, its
  failure opens it again.
- **A key's own circuit** opens after ``failures`` failures in a row of that
  key's requests, and refuses only that key, with the same cooldown and probe.
  Its failures then count as one in the backend's: a key whose requests make
  the upstream fail (a prompt that crashes it, say) pauses itself, and its
  neighbours keep the backend. A gateway with a single key loses nothing: its
  key's circuit opens as the backend's did.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.settings import BreakerSettings

MIN_KEYS = 2  # distinct keys whose failures open the backend's circuit
MAX_TRACKED_KEYS = 10_000  # keys with failures remembered; the oldest are forgotten beyond


@dataclass(slots=True)
class _Circuit:
    """Closed, open until ``open_until``, or half-open (``probing``)."""

    failures: int = 0  # in a row (a key's circuit: the backend's counts by key)
    open_until: float | None = None
    probing: bool = False

    def allows(self, now: float) -> bool:
        return self.open_until is None or (not self.probing and now >= self.open_until)

    def claim(self) -> None:
        """Called when a request is let through: past the cooldown, it is the probe."""
        if self.open_until is not None:
            self.probing = True

    def fail(self, now: float, settings: BreakerSettings, enough: bool) -> None:
        self.failures += 1
        if self.probing or enough:
            self.open_until = now + settings.cooldown
        self.probing = False


class CircuitBreaker:
    def __init__(
        self, settings: BreakerSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._backend = _Circuit()
        self._run: dict[str, int] = {}  # failures since the backend's last success, by key
        self._keys: dict[str, _Circuit] = {}  # keys that failed since their last success

    @property
    def state(self) -> str:
        """The backend's circuit: ``closed``, ``open`` or ``half-open``."""
        return _state(self._backend)

    def key_state(self, key: str) -> str:
        """The key's own circuit on this backend."""
        circuit = self._keys.get(key)
        return "closed" if circuit is None else _state(circuit)

    def allow(self, key: str) -> bool:
        """Whether ``key``'s request may go to the backend now (claims the probe of an
        open circuit past its cooldown)."""
        now = self._clock()
        mine = self._keys.get(key)
        if mine is not None and not mine.allows(now):
            return False
        if not self._backend.allows(now):
            return False
        if mine is not None:
            mine.claim()
        self._backend.claim()
        return True

    def refuses_key(self, key: str) -> bool:
        """Whether ``key`` is refused by its own circuit (not the backend's)."""
        mine = self._keys.get(key)
        return mine is not None and not mine.allows(self._clock())

    def success(self, key: str) -> None:
        if self._run or self._backend.open_until is not None:  # else nothing to forget
            self._backend = _Circuit()
            self._run.clear()
        if self._keys:
            self._keys.pop(key, None)

    def failure(self, key: str) -> None:
        now = self._clock()
        settings = self._settings
        mine = self._keys.pop(key, None) or _Circuit()
        self._keys[key] = mine  # the most recent last: forgotten last
        self._run[key] = self._run.get(key, 0) + 1
        run = sum(self._run.values())
        self._backend.fail(now, settings, run >= settings.failures and len(self._run) >= MIN_KEYS)
        mine.fail(now, settings, mine.failures + 1 >= settings.failures)
        if mine.open_until is not None:
            # Its failures show that its own requests fail: they count as one, so a
            # neighbour's single failure next to them does not open the backend.
            self._run[key] = 1
        while len(self._keys) > MAX_TRACKED_KEYS:
            oldest = next(iter(self._keys))
            del self._keys[oldest]
            self._run.pop(oldest, None)

    def release(self, key: str) -> None:
        """The request ended without telling (busy, or its client left): let another probe."""
        self._backend.probing = False
        mine = self._keys.get(key)
        if mine is not None:
            mine.probing = False


def _state(circuit: _Circuit) -> str:
    if circuit.open_until is None:
        return "closed"
    return "half-open" if circuit.probing else "open"
