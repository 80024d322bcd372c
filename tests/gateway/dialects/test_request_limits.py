"""``gateway.dialects.request_limits``: one walk, four limits, each a clear 4xx."""

from __future__ import annotations

import pytest

from gateway.dialects.request_limits import DefaultRequestLimits, check_request
from gateway.errors import GatewayError

SMALL = DefaultRequestLimits(max_json_depth=3, max_input_items=2, max_tools=1, max_text_chars=20)


def refusal(body: object, items: str = "messages") -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        check_request(body, SMALL, items=items)
    return caught.value


def test_within_the_limits_passes() -> None:
    check_request({"messages": [{"a": "b"}, "c"], "tools": [1]}, SMALL, items="messages")
    check_request("0123456789", SMALL, items="input")
    check_request(None, SMALL, items="input")


def test_too_deep_is_a_400() -> None:
    error = refusal({"a": [{"b": [1]}]})
    assert (error.status, error.code) == (400, "json_too_deep")
    check_request({"a": [1]}, SMALL, items="x")  # scalars do not add a level


def test_deep_nesting_is_checked_without_recursion() -> None:
    deep: object = []
    for _ in range(200_000):
        deep = [deep]
    assert refusal(deep).code == "json_too_deep"


def test_too_many_items_and_tools_name_the_field() -> None:
    error = refusal({"input": [1, 2, 3]}, items="input")
    assert (error.status, error.param, error.code) == (400, "input", "too_many_items")
    error = refusal({"tools": [1, 2]})
    assert (error.status, error.param, error.code) == (400, "tools", "too_many_tools")


def test_too_much_text_is_a_413_and_keys_count() -> None:
    assert refusal({"m": "x" * 20}).status == 413
    assert refusal({"k" * 21: 1}).status == 413
