"""The checks the CLI and the admin API share for an admin action's values."""

from __future__ import annotations

import math

import pytest

from gateway import amounts, key_rules


@pytest.mark.parametrize(
    ("check", "value", "ok"),
    [
        (key_rules.balance, 0, True),
        (key_rules.balance, 5, True),
        (key_rules.balance, -5, False),
        (key_rules.balance, amounts.MAX_CREDITS + 1, False),
        (key_rules.credit, -5, True),
        (key_rules.credit, 0, False),
        (key_rules.credit, -amounts.MAX_CREDITS - 1, False),
        (key_rules.lifetime, 1.0, True),
        (key_rules.lifetime, 0.0, False),
        (key_rules.lifetime, -60.0, False),
        (key_rules.lifetime, math.nan, False),
        (key_rules.lifetime, math.inf, False),
        (key_rules.lifetime, key_rules.MAX_LIFETIME_SECONDS + 1.0, False),
        (key_rules.limit, 0, True),
        (key_rules.limit, -1, False),
        (key_rules.agent, "echo", True),
        (key_rules.agent, "", False),
        (key_rules.agent, "a,b", False),  # would be read back as two agents
        (key_rules.name, "alice", True),
        (key_rules.name, "  ", False),
        (key_rules.note, "x" * (key_rules.MAX_TEXT + 1), False),
    ],
)
def test_checks(check: object, value: object, ok: bool) -> None:
    problem = check(value)  # type: ignore[operator]
    assert (problem is None) is ok, problem


def test_unserved_agents_are_named_in_a_warning() -> None:
    assert key_rules.unserved(["echo", "nope"], {"echo": 1}) == ("nope",)
    assert key_rules.unserved([], {}) == ()
    assert "'nope'" in key_rules.unserved_warning(("nope",))
