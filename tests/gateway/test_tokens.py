from __future__ import annotations

import pytest

from gateway.invocation import (
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    Message,
    Reasoning,
    TextPart,
)
from gateway.tokens import MESSAGE_OVERHEAD, estimate_input, estimate_output, estimate_text
from tests.conftest import invocation


@pytest.mark.parametrize(
    ("text", "expected"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100)]
)
def test_estimate_text_rounds_up(text: str, expected: int) -> None:
    assert estimate_text(text) == expected


def test_estimate_input_counts_every_item() -> None:
    inv = invocation(
        instructions="x" * 8,  # 2
        input=(
            Message("user", (TextPart("y" * 12),)),  # 4 + 3
            FunctionCall("c", "name", "a" * 8),  # 4 + 1 + 2
            FunctionCallOutput("c", "o" * 16),  # 4 + 4
            Reasoning("r" * 4),  # 4 + 1
        ),
    )
    assert estimate_input(inv) == 2 + 3 + (1 + 2) + 4 + 1 + 4 * MESSAGE_OVERHEAD


def test_estimate_input_counts_tools() -> None:
    bare = invocation("hi")
    with_tool = invocation(
        "hi", tools=(FunctionTool("weather", "the weather", {"type": "object"}),)
    )
    assert estimate_input(with_tool) > estimate_input(bare) + estimate_text("weather")


def test_estimate_output_at_least_one_token_per_delta() -> None:
    assert estimate_output(chars=4, deltas=3) == 3
    assert estimate_output(chars=40, deltas=3) == 10
    assert estimate_output(chars=0, deltas=0) == 0
