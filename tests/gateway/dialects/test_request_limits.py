"""``gateway.dialects.request_limits``: one walk, four limits, each a clear 4xx."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.dialects.request_limits import (
    DefaultRequestLimits,
    ShapeKnown,
    _check_shape,
    check_request,
    shape_known,
    within_shape,
)
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


# A body whose bytes show it within the depth and text limits is not walked

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(body=_JSON, depth=st.integers(1, 6), chars=st.integers(0, 60), ascii_only=st.booleans())
@example(
    body={"messages": [{"role": "user", "content": "é" * 10}]}, depth=3, chars=40, ascii_only=False
)
@example(body=[[["x"]]], depth=3, chars=20, ascii_only=True)
@example(body={"\ud83d\ude00": "\u2028"}, depth=1, chars=2, ascii_only=True)
def test_a_body_within_its_shape_by_its_bytes_is_within_it_by_the_walk(
    body: object, depth: int, chars: int, ascii_only: bool
) -> None:
    limits = DefaultRequestLimits(max_json_depth=depth, max_text_chars=chars)
    raw = orjson.dumps(body) if not ascii_only else json.dumps(body).encode()
    if within_shape(raw, limits):
        _check_shape(orjson.loads(raw), depth, chars)  # never refused by the walk


def test_shape_known_limits_skip_the_walk_and_keep_the_counts() -> None:
    known = shape_known(SMALL)
    assert type(known) is ShapeKnown and shape_known(SMALL) is known
    assert (known.max_json_depth, known.max_input_items, known.max_tools) == (3, 2, 1)
    check_request({"a": [{"b": [1]}]}, known, items="x")  # too deep, but not walked
    with pytest.raises(GatewayError, match="at most 2 entries"):
        check_request({"messages": [1, 2, 3]}, known, items="messages")
    other = DefaultRequestLimits(max_json_depth=9)
    assert shape_known(other).max_json_depth == 9 and shape_known(SMALL) == known


def test_within_shape_counts_bytes_and_brackets() -> None:
    assert within_shape(b'{"a": "' + b"x" * 10 + b'"}', SMALL)
    assert not within_shape(b'"' + b"x" * 25 + b'"', SMALL)  # more bytes than characters allowed
    assert within_shape(b"[[[1]]]", SMALL) and not within_shape(b"[[[[1]]]]", SMALL)
    assert not within_shape(b'["[", "{", "["]', SMALL)  # brackets in strings count too
