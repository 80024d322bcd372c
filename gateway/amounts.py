"""The range of every amount of credits and every token count, checked where each enters.

Redis scripts do their arithmetic in Lua numbers, which are doubles: exact for integers
only up to 2**53 (about 9.007e15). Every balance, hold, charge, credit, budget and limit
lies within ``±MAX_CREDITS`` (1e15 credits, 1e9 USD) and every token count within
``MAX_TOKENS``, so a script's sums of a few of them stay exact and print as integers.
What people send out of range (admin API, CLI, requests) is refused with a 400; what an
upstream reports out of range is clamped and flagged by metering, never written.
"""

from __future__ import annotations

from gateway.errors import InvalidRequest

MAX_CREDITS = 10**15
MAX_TOKENS = 10**12


def credits(value: object, param: str, *, minimum: int = -MAX_CREDITS) -> int:
    """``value`` as a whole number of credits in ``[minimum, MAX_CREDITS]``, or a 400."""
    return _whole(value, param, minimum, MAX_CREDITS)


def count(value: object, param: str) -> int:
    """``value`` as a limit or count in ``[0, MAX_CREDITS]`` (a budget is in credits), or a 400."""
    return _whole(value, param, 0, MAX_CREDITS)


def _whole(value: object, param: str, minimum: int, maximum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(f"{param} must be a whole number", param=param)
    if not minimum <= value <= maximum:
        raise InvalidRequest(
            f"{param} must be between {minimum:,} and {maximum:,} (got {value:,})", param=param
        )
    return value


def tokens(value: int) -> int:
    """A token count an upstream reported, clamped into ``[0, MAX_TOKENS]``."""
    return min(max(value, 0), MAX_TOKENS)
