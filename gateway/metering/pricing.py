"""What usage costs: credits at a route's prices, rounded up once per request."""

from __future__ import annotations

from gateway import amounts
from gateway.events import Usage
from gateway.route import Pricing


def cost(usage: Usage, pricing: Pricing) -> int:
    """The credits ``usage`` costs at ``pricing``, rounded up to a whole credit."""
    return tokens_cost(
        pricing,
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
        usage.cache_write_tokens,
    )


def tokens_cost(
    pricing: Pricing, input_tokens: int, output_tokens: int = 0, cached: int = 0, written: int = 0
) -> int:
    """``cost`` of a usage with these counts, without making one (admission prices three).

    Summed in integers (``Pricing.rates``: the prices over one scale) and divided once,
    rounding up: the exact cost, as the ``Decimal`` sum of the prices would make it
    (``tests/gateway/test_metering.py`` holds it to that), in a fraction of the
    work. A count of zero adds nothing, so its term is left out: most requests have no
    cached or written tokens."""
    rates = pricing.rates
    exact = max(0, input_tokens - cached - written) * rates.input
    if cached:
        exact += cached * rates.cached_input
    if written:
        exact += written * rates.cache_write
    if output_tokens:
        exact += output_tokens * rates.output
    return -(-exact // rates.scale)  # rounded up


def input_costs(pricing: Pricing, input_tokens: int, output_tokens: int) -> tuple[int, int]:
    """``tokens_cost(pricing, input_tokens)`` and ``tokens_cost(pricing, input_tokens,
    output_tokens)``, with the input's exact cost worked out once: admission prices the
    input alone (a 402's figures) and with the output cap it holds."""
    rates = pricing.rates
    exact = max(0, input_tokens) * rates.input
    whole = exact + output_tokens * rates.output if output_tokens else exact
    scale = rates.scale
    return -(-exact // scale), -(-whole // scale)


def sane(usage: Usage) -> Usage:
    """An upstream's usage made consistent: every count within ``[0, MAX_TOKENS]``, input
    covering its cached and written parts, output covering its reasoning."""
    cached, written = usage.cached_input_tokens, usage.cache_write_tokens
    reasoning, output = usage.reasoning_tokens, usage.output_tokens
    if (
        cached >= 0
        and written >= 0
        and cached + written <= usage.input_tokens <= amounts.MAX_TOKENS
        and 0 <= reasoning <= output <= amounts.MAX_TOKENS
    ):  # consistent already (most usages): every count below is the same
        return usage
    clamp = amounts.tokens
    input_tokens = clamp(
        max(usage.input_tokens, usage.cached_input_tokens + usage.cache_write_tokens)
    )
    cached = min(clamp(usage.cached_input_tokens), input_tokens)
    written = min(clamp(usage.cache_write_tokens), input_tokens - cached)
    output = clamp(max(usage.output_tokens, usage.reasoning_tokens))
    reasoning = min(clamp(usage.reasoning_tokens), output)
    counts = (input_tokens, output, cached, written, reasoning)
    if counts == (
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
    ):
        return usage
    return Usage(*counts, estimated=usage.estimated, credits=usage.credits)
