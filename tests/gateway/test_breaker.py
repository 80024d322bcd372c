from __future__ import annotations

from gateway import breaker as breaker_module
from gateway.breaker import CircuitBreaker
from gateway.settings import BreakerSettings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(failures: int = 2, cooldown: float = 10.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker(BreakerSettings(failures, cooldown), clock), clock


def test_opens_after_consecutive_failures_of_several_keys_only() -> None:
    b, _ = breaker(failures=2)
    b.failure("a")
    b.success("b")  # a success in between resets the count
    b.failure("b")
    assert b.allow("c") and b.state == "closed"
    b.failure("a")
    assert b.state == "open" and not b.allow("c") and not b.allow("a")


def test_one_keys_failures_pause_that_key_only() -> None:
    """One key whose requests make the upstream fail never opens the backend's circuit:
    its own opens, and refuses only it."""
    b, clock = breaker(failures=3, cooldown=10)
    for _ in range(1000):
        if b.allow("noisy"):
            b.failure("noisy")
    assert b.state == "closed" and b.allow("quiet")
    assert b.key_state("noisy") == "open" and b.refuses_key("noisy")
    assert not b.refuses_key("quiet")
    b.failure("quiet")  # a neighbour's one failure, next to the noisy key's many
    assert b.state == "closed" and b.allow("quiet")
    b.success("quiet")
    assert b.key_state("noisy") == "open"  # a neighbour's success does not close it
    clock.now += 10
    assert b.allow("noisy") and b.key_state("noisy") == "half-open"  # its probe
    assert not b.allow("noisy")
    b.success("noisy")
    assert b.key_state("noisy") == "closed" and b.allow("noisy")


def test_a_failing_key_probe_reopens_only_that_key() -> None:
    b, clock = breaker(failures=2, cooldown=10)
    b.failure("noisy")
    b.failure("noisy")
    clock.now += 11
    assert b.allow("noisy")
    b.failure("noisy")
    assert b.key_state("noisy") == "open" and not b.allow("noisy")
    assert b.state == "closed" and b.allow("quiet")


def test_a_down_backend_still_opens_for_everyone() -> None:
    b, _ = breaker(failures=4)
    for key in ("a", "b", "c", "a"):
        assert b.allow(key)
        b.failure(key)
    assert b.state == "open"
    assert not any(b.allow(k) for k in ("a", "b", "c", "never-failed"))
    assert not b.refuses_key("never-failed")  # refused by the backend's circuit


def test_a_single_key_gateway_still_stops_sending() -> None:
    b, _ = breaker(failures=2)
    b.failure("only")
    b.failure("only")
    assert not b.allow("only")


def test_one_probe_after_the_cooldown() -> None:
    b, clock = breaker(failures=1, cooldown=10)
    b.failure("a")
    b.failure("b")
    clock.now += 9.9
    assert not b.allow("c")
    clock.now += 0.2
    assert b.allow("c")  # the probe
    assert b.state == "half-open"
    assert not b.allow("c")  # only one probe at a time


def test_probe_outcomes() -> None:
    b, clock = breaker(failures=3, cooldown=10)
    for key in ("a", "b", "c"):
        b.failure(key)
    assert b.state == "open"
    clock.now += 11
    assert b.allow("d")
    b.failure("d")  # a failed probe opens it again at once
    assert b.state == "open" and not b.allow("d")
    clock.now += 11
    assert b.allow("e")
    b.success("e")
    assert b.state == "closed" and b.allow("a") and b.allow("b")


def test_a_probe_that_never_reports_is_released() -> None:
    b, clock = breaker(failures=1, cooldown=1)
    b.failure("a")
    b.failure("b")
    clock.now += 2
    assert b.allow("c")
    b.release("c")
    assert b.allow("c")


def test_keys_remembered_are_bounded(monkeypatch: object) -> None:
    b, _ = breaker(failures=5)
    setattr(breaker_module, "MAX_TRACKED_KEYS", 3)  # noqa: B010
    try:
        for i in range(10):
            b.failure(f"k{i}")
        assert len(b._keys) == 3 and len(b._run) <= 3
    finally:
        setattr(breaker_module, "MAX_TRACKED_KEYS", 10_000)  # noqa: B010
