from __future__ import annotations

import pytest

from gateway.errors import InvalidRequest
from gateway.wire.fields import join, kind, opt_int, opt_number, req_str, str_map


def test_join() -> None:
    assert join("", "a") == "a"
    assert join("a", "b") == "a.b"
    assert join("a", 2) == "a[2]"


def test_integral_floats_are_integers() -> None:
    assert opt_int({"n": 3.0}, "n") == 3
    with pytest.raises(InvalidRequest) as info:
        opt_int({"n": 3.5}, "n", "p")
    assert info.value.param == "p.n"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "1", None, True])
def test_numbers_must_be_finite_numbers(value: object) -> None:
    if value is None:
        assert opt_number({"x": value}, "x") is None
        return
    with pytest.raises(InvalidRequest):
        opt_number({"x": value}, "x")


def test_range_message() -> None:
    with pytest.raises(InvalidRequest) as info:
        opt_number({"t": 5}, "t", lo=0, hi=2)
    assert info.value.message == "Invalid 't': must be at most 2, but got 5"


def test_req_str() -> None:
    with pytest.raises(InvalidRequest) as info:
        req_str({}, "model")
    assert info.value.message == "Missing required parameter: 'model'"
    assert req_str({"s": ""}, "s", non_empty=False) == ""


def test_str_map_copies() -> None:
    source = {"a": "b"}
    out = str_map({"m": source}, "m")
    assert out == source and out is not source


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "null"),
        (True, "a boolean"),
        (1, "a number"),
        ("", "a string"),
        ([], "an array"),
        ({}, "an object"),
    ],
)
def test_kind(value: object, expected: str) -> None:
    assert kind(value) == expected


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 1e30])
def test_integers_beyond_64_bits_are_refused(value: object) -> None:
    with pytest.raises(InvalidRequest) as err:
        opt_int({"seed": value}, "seed")
    assert err.value.param == "seed"
    assert opt_int({"seed": 2**63 - 1}, "seed") == 2**63 - 1
