"""The HTTP headers metering adds to an answer or a refusal: OpenAI's ``x-ratelimit-*``,
``Retry-After``, and the gateway's own ``x-gateway-cost``, ``x-gateway-balance`` and
``x-gateway-balance-team``."""

from __future__ import annotations

import functools

from gateway.store.holds import WINDOW_SECONDS, Admitted
from gateway.store.records import KeyLimits


def rate_limits(limits: KeyLimits, admitted: Admitted, started_at: float) -> dict[str, str]:
    """The key's request and token limits per minute, and what its window has left.

    For a key without either limit (most keys), an empty dict at once. The texts that
    stay the same from request to request (a limit, the seconds to the window's end)
    are made once (``_limit_text``, ``_RESETS``); only what is left is made per request."""
    rpm, tpm = limits.rpm, limits.tpm
    if not (rpm or tpm):
        return {}
    out: dict[str, str] = {}
    reset = _reset(started_at)
    if rpm:
        out["x-ratelimit-limit-requests"] = _limit_text(rpm)
        left = rpm - admitted.requests
        out["x-ratelimit-remaining-requests"] = str(left) if left > 0 else "0"
        out["x-ratelimit-reset-requests"] = reset
    if tpm:
        out["x-ratelimit-limit-tokens"] = _limit_text(tpm)
        left = tpm - admitted.tokens
        out["x-ratelimit-remaining-tokens"] = str(left) if left > 0 else "0"
        out["x-ratelimit-reset-tokens"] = reset
    return out


_limit_text = functools.lru_cache(maxsize=256)(str)  # a limit as text: one per key's limit

# The reset header's text by the seconds into the window: "60s" at its start, "1s" at
# its last second.
_RESETS = tuple(f"{WINDOW_SECONDS - second}s" for second in range(WINDOW_SECONDS))


def _reset(started_at: float) -> str:
    """``f"{WINDOW_SECONDS - int(started_at % WINDOW_SECONDS)}s"``, kept in ``_RESETS``."""
    second = int(started_at % WINDOW_SECONDS)
    if 0 <= second < WINDOW_SECONDS:
        return _RESETS[second]
    return f"{WINDOW_SECONDS - second}s"  # a modulo rounded up to a whole window


def billing(credits: int, balance: int | None, team: str = "") -> dict[str, str]:
    """A complete answer's cost and, when known, the balance after it: the key's, or
    for a key in a team the team's, named by ``x-gateway-balance-team``."""
    out = {"x-gateway-cost": str(credits)}
    if balance is not None:
        out["x-gateway-balance"] = str(balance)
    if team:
        out["x-gateway-balance-team"] = team
    return out


def refusal(kind: str | None, limit: int, retry: int) -> dict[str, str]:
    """A 429's: when to retry, and which limit (``requests``, ``tokens``) ran out."""
    headers = {"Retry-After": str(retry)}
    if kind is not None:
        headers[f"x-ratelimit-limit-{kind}"] = str(limit)
        headers[f"x-ratelimit-remaining-{kind}"] = "0"
        headers[f"x-ratelimit-reset-{kind}"] = f"{retry}s"
    return headers
