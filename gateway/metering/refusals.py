"""What a refused client reads: the 402, 429 and 503 of admission, each saying why
and, where it can, what would have fitted."""

from __future__ import annotations

import math

from gateway import amounts
from gateway.errors import InsufficientQuota, RateLimited, ServiceUnavailable
from gateway.metering import headers
from gateway.route import Pricing
from gateway.store.holds import Refusal


def too_costly(credits: int) -> InsufficientQuota:
    """A request whose most possible cost is beyond what any one request may hold."""
    return InsufficientQuota(
        f"This request may cost up to {credits:,} credits, more than any one request "
        f"may hold ({amounts.MAX_CREDITS:,}): ask for fewer output tokens."
    )


def budget_too_small(budget: int, input_credits: int) -> InsufficientQuota:
    return InsufficientQuota(
        f"The request's budget of {budget} credits does not cover its input "
        f"(up to {input_credits} credits).",
        code="budget_too_small",
    )


def no_room_for_output(budget: int) -> InsufficientQuota:
    return InsufficientQuota(
        f"The request's budget of {budget} credits leaves no room for output.",
        code="budget_too_small",
    )


def key_moving(key_id: str) -> RateLimited:
    """A key being moved into, out of or between teams (``gateway keys move``): for a
    second or so no process admits its requests, so its counters move whole."""
    return RateLimited(
        f"Key {key_id} is being moved between teams; retry in a second.",
        code="key_moving",
        headers={"Retry-After": "1"},
    )


def store_unavailable() -> ServiceUnavailable:
    """``redis.admission: fail_closed`` with the store out of reach."""
    return ServiceUnavailable(
        "The gateway cannot reach its store (Redis) to reserve this request's "
        "cost, so it refuses the request rather than risk overspending "
        "(redis.admission: fail_closed); retry later.",
        code="store_unavailable",
        headers={"Retry-After": "1"},
    )


def too_poor(
    refusal: Refusal, credits: int, input_credits: int, cap: int, pricing: Pricing
) -> InsufficientQuota:
    """The 402 of a key whose free balance cannot hold the request, saying what would fit.

    The hold assumes the whole output cap (the route's default when the client sets none),
    so a small key is refused a request it could afford with a smaller ``max_tokens``.
    """
    balance, held = refusal.current, refusal.limit
    free = balance - held
    whose = "this key's team" if refusal.whose == "team" else "this key"
    situation = (
        f"Insufficient balance: {whose} has {balance} credits ({held} held by requests in "
        f"flight), and this request may cost up to {credits} credits: its input, up to "
        f"{input_credits}, and {cap} output tokens."
    )
    fits = math.floor((free - input_credits) / pricing.output) if pricing.output else 0
    if fits >= 1:
        account = "team" if refusal.whose == "team" else "key"  # a team's key takes no credits
        advice = (
            f" Ask for at most {fits} output tokens (max_tokens, or max_output_tokens in "
            f"Open Responses), or add credits to the {account}."
        )
    else:
        advice = " Its input alone needs more than is free: add credits, or send less input."
    return InsufficientQuota(situation + advice)


def refused(refusal: Refusal, credits: int) -> InsufficientQuota | RateLimited:
    """The 402 of a budget spent, or the 429 of a rate or concurrency limit reached."""
    reason = refusal.reason
    if reason in ("daily_budget", "monthly_budget"):
        period = "daily" if reason == "daily_budget" else "monthly"
        return InsufficientQuota(
            f"This key's {_whose(refusal)}{period} budget of {refusal.limit} credits "
            "would be exceeded "
            f"({refusal.current} spent; this request may cost up to {credits}).",
            code="budget_exceeded",
        )
    what = {
        "requests": "requests per minute",
        "tokens": "tokens per minute",
        "concurrency": "concurrent requests",
    }[reason]
    retry = max(1, math.ceil(refusal.retry_after)) if refusal.retry_after else 1
    kind = {"requests": "requests", "tokens": "tokens"}.get(reason)
    return RateLimited(
        f"Rate limit reached: {_whose(refusal)}{refusal.limit} {what} "
        f"({refusal.current} in use). "
        f"Retry after {retry} s.",
        headers=headers.refusal(kind, refusal.limit, retry),
    )


def _whose(refusal: Refusal) -> str:
    """Names the team when its limit (not the key's own) refused the request."""
    return "team's " if refusal.whose == "team" else ""
