from __future__ import annotations

from gateway.breaker import CircuitBreaker
from gateway.config import BreakerSettings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(failures: int = 2, cooldown: float = 10.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker(BreakerSettings(failures, cooldown), clock), clock


def test_opens_after_consecutive_failures_only() -> None:
    b, _ = breaker(failures=2)
    b.failure()
    b.success()  # a success in between resets the count
    b.failure()
    assert b.allow() and b.state == "closed"
    b.failure()
    assert b.state == "open" and not b.allow()


def test_one_probe_after_the_cooldown() -> None:
    b, clock = breaker(failures=1, cooldown=10)
    b.failure()
    clock.now += 9.9
    assert not b.allow()
    clock.now += 0.2
    assert b.allow()  # the probe
    assert b.state == "half-open"
    assert not b.allow()  # only one probe at a time


def test_probe_outcomes() -> None:
    b, clock = breaker(failures=3, cooldown=10)
    for _ in range(3):
        b.failure()
    clock.now += 11
    assert b.allow()
    b.failure()  # a failed probe opens it again at once
    assert b.state == "open" and not b.allow()
    clock.now += 11
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow() and b.allow()


def test_a_probe_that_never_reports_is_released() -> None:
    b, clock = breaker(failures=1, cooldown=1)
    b.failure()
    clock.now += 2
    assert b.allow()
    b.release()
    assert b.allow()
