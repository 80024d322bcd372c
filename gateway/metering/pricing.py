"""What usage costs: credits at a route's prices, rounded up once per request."""

from __future__ import annotations

import math

from gateway import amounts
from gateway.events import Usage
from gateway.route import Pricing


def cost(usage: Usage, pricing: Pricing) -> int:
    """The credits ``usage`` costs at ``pricing``, rounded up to a whole credit."""
    cached_price = pricing.input if pricing.cached_input is None else pricing.cached_input
    write_price = pricing.input if pricing.cache_write is None else pricing.cache_write
    uncached = max(0, usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens)
    exact = (
        uncached * pricing.input
        + usage.cached_input_tokens * cached_price
        + usage.cache_write_tokens * write_price
        + usage.output_tokens * pricing.output
    )
    return math.ceil(exact)


def sane(usage: Usage) -> Usage:
    """An upstream's usage made consistent: every count within ``[0, MAX_TOKENS]``, input
    covering its cached and written parts, output covering its reasoning."""
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
