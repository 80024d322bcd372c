"""Recent traffic: the access log's fields kept in memory, and each backend's numbers."""

from __future__ import annotations

import logging

from gateway.server.console.live import Recent, backend_stats


def test_recent_keeps_the_latest_lines_fields_only() -> None:
    recent = Recent(size=2)
    logger = logging.getLogger("tests.console.live")
    logger.setLevel(logging.INFO)
    logger.addHandler(recent)
    try:
        for i in range(3):
            extra = {"request_id": f"r{i}", "backend": "b", "status": 200, "secret": object()}
            logger.info("request completed", extra=extra)
    finally:
        logger.removeHandler(recent)
    assert [line["request_id"] for line in recent.lines] == ["r1", "r2"]
    assert "secret" not in recent.lines[0] and recent.lines[0]["status"] == 200


def test_backend_stats() -> None:
    lines: list[dict[str, object]] = [
        {"backend": "a", "outcome": "completed", "duration_ms": float(ms), "at": 1.0}
        for ms in range(1, 21)
    ]
    lines.append({"backend": "a", "outcome": "failed", "error": "timeout", "at": 5.0})
    lines.append({"backend": None, "outcome": "refused"})
    stats = backend_stats(lines)
    assert list(stats) == ["a"]
    a = stats["a"]
    assert (a.requests, a.errors, a.p50_ms, a.p95_ms) == (21, 1, 10.5, 20.0)
    assert (a.last_error, a.last_error_at) == ("timeout", 5.0)
