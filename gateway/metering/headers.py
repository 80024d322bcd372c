"""The HTTP headers metering adds to an answer or a refusal: OpenAI's ``x-ratelimit-*``,
``Retry-After``, and the gateway's own ``x-gateway-cost`` and ``x-gateway-balance``."""

from __future__ import annotations

from gateway.store.holds import WINDOW_SECONDS, Admitted
from gateway.store.records import KeyLimits


def rate_limits(limits: KeyLimits, admitted: Admitted, started_at: float) -> dict[str, str]:
    """The key's request and token limits per minute, and what its window has left."""
    out: dict[str, str] = {}
    reset = f"{WINDOW_SECONDS - int(started_at % WINDOW_SECONDS)}s"
    if limits.rpm:
        out["x-ratelimit-limit-requests"] = str(limits.rpm)
        out["x-ratelimit-remaining-requests"] = str(max(0, limits.rpm - admitted.requests))
        out["x-ratelimit-reset-requests"] = reset
    if limits.tpm:
        out["x-ratelimit-limit-tokens"] = str(limits.tpm)
        out["x-ratelimit-remaining-tokens"] = str(max(0, limits.tpm - admitted.tokens))
        out["x-ratelimit-reset-tokens"] = reset
    return out


def billing(credits: int, balance: int | None) -> dict[str, str]:
    """A complete answer's cost and, when known, the key's balance after it."""
    if balance is None:
        return {"x-gateway-cost": str(credits)}
    return {"x-gateway-cost": str(credits), "x-gateway-balance": str(balance)}


def refusal(kind: str | None, limit: int, retry: int) -> dict[str, str]:
    """A 429's: when to retry, and which limit (``requests``, ``tokens``) ran out."""
    headers = {"Retry-After": str(retry)}
    if kind is not None:
        headers[f"x-ratelimit-limit-{kind}"] = str(limit)
        headers[f"x-ratelimit-remaining-{kind}"] = "0"
        headers[f"x-ratelimit-reset-{kind}"] = f"{retry}s"
    return headers
