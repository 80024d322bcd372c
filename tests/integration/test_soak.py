"""A short soak (``bench/soak.py``) in the test suite: 20 s of mixed load with faults.

``make soak`` runs the same for 5 minutes (``SOAK_DURATION``); this keeps CI's
time in check while still catching a leak that shows within seconds or any lost
charge.
"""

from __future__ import annotations

from bench.soak import soak

DURATION = 20.0


async def test_a_short_soak_loses_nothing_and_leaks_nothing(redis_url: str) -> None:
    report = await soak(DURATION, concurrency=12, redis_url=redis_url)
    assert report.ok, report.text()
    assert report.keys_checked >= 3
    assert sum(report.outcomes.values()) > 500, report.text()
