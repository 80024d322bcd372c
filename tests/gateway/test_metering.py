from __future__ import annotations

from gateway.events import (
    Usage,
)
from gateway.metering import cost
from gateway.route import Route
from tests.gateway.factories import pricing

PRICED = Route(backend="echo", pricing=pricing(input="0.15", output="0.6"))


# cost()


def test_cost_rounds_up_once_per_request() -> None:
    assert cost(Usage(input_tokens=3), pricing(input="0.15")) == 1  # ceil(0.45)
    # Rounded once over the sum, not once per kind of token: ceil(0.4 + 0.4), not 1 + 1.
    assert cost(Usage(1, 1), pricing(input="0.4", output="0.4")) == 1
    assert cost(Usage(10, 0), pricing(input="0.1")) == 1  # exact: no float 1.0000000000000002
    assert cost(Usage(0, 0), pricing(input="5", output="5")) == 0


def test_cost_is_exact_with_decimal_prices() -> None:
    # 0.1 * 30 == 3 exactly in decimal (binary floats give 3.0000000000000004 -> 4).
    assert cost(Usage(30, 0), pricing(input="0.1")) == 3
    assert cost(Usage(1_000_000, 1_000_000), pricing(input="2.5", output="10")) == 12_500_000
    assert cost(Usage(7, 0), pricing(input="0.000001")) == 1


def test_cached_tokens_use_the_cached_price() -> None:
    p = pricing(input="1", output="0", cached_input="0.25")
    # 100 input of which 40 cached: 60 * 1 + 40 * 0.25 = 70
    assert cost(Usage(input_tokens=100, cached_input_tokens=40), p) == 70


def test_cached_tokens_fall_back_to_the_input_price() -> None:
    p = pricing(input="1")
    assert cost(Usage(input_tokens=100, cached_input_tokens=40), p) == 100


def test_cache_write_price_and_fallback() -> None:
    usage = Usage(input_tokens=100, cached_input_tokens=10, cache_write_tokens=30)
    p = pricing(input="1", cached_input="0.1", cache_write="2")
    assert cost(usage, p) == 60 + 1 + 60
    assert cost(usage, pricing(input="1", cached_input="0.1")) == 60 + 1 + 30


def test_zero_cached_price_is_not_the_input_price() -> None:
    p = pricing(input="1", cached_input="0")
    assert cost(Usage(input_tokens=10, cached_input_tokens=10), p) == 0


def test_output_includes_reasoning_once() -> None:
    usage = Usage(input_tokens=0, output_tokens=10, reasoning_tokens=4)
    assert cost(usage, pricing(output="1")) == 10
