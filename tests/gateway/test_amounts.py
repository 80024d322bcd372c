"""gateway.amounts: the stated ranges, and the scripts that hold the same bound."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway import amounts
from gateway.errors import InvalidRequest
from gateway.store.store import script_source

LUA = Path(amounts.__file__).parent / "store" / "lua"


@pytest.mark.parametrize("value", [0, 1, -amounts.MAX_CREDITS, amounts.MAX_CREDITS])
def test_credits_in_range_pass(value: int) -> None:
    assert amounts.credits(value, "credits") == value


@pytest.mark.parametrize(
    "value", [amounts.MAX_CREDITS + 1, -amounts.MAX_CREDITS - 1, 2**63, 1.0, True, "5", None]
)
def test_credits_out_of_range_or_not_whole_are_a_400(value: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        amounts.credits(value, "credits")
    assert info.value.status == 400 and info.value.param == "credits"


def test_a_minimum_narrows_the_range() -> None:
    with pytest.raises(InvalidRequest, match="between 0 and"):
        amounts.credits(-1, "balance", minimum=0)
    with pytest.raises(InvalidRequest):
        amounts.count(-1, "limits.rpm")


@pytest.mark.parametrize(
    ("reported", "kept"), [(-5, 0), (0, 0), (7, 7), (10**30, amounts.MAX_TOKENS)]
)
def test_tokens_are_clamped(reported: int, kept: int) -> None:
    assert amounts.tokens(reported) == kept


def test_the_bound_is_exact_in_lua_and_the_scripts_say_the_same() -> None:
    """Lua numbers are doubles: a sum of a few bounded amounts must stay below 2**53."""
    assert 4 * amounts.MAX_CREDITS < 2**53
    for name in ("settle", "settle_team", "post_entry"):  # as Redis runs them: with preludes
        literals = set(re.findall(r"\b1(?:0{15})\b", script_source(name)))
        assert literals == {str(amounts.MAX_CREDITS)}, name
    for path in LUA.glob("**/*.lua"):
        assert "tostring(" not in path.read_text(), f"{path.name}: prints 1e14+ as a float"
