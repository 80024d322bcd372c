"""What the Live and Routes pages show of recent traffic: the last few hundred lines of
the access log (the ``request_log`` filter's fields, as they are logged), kept in
memory by a logging handler while the console runs, and this process's requests in
flight (their holds). No content, only what the access log already has."""

from __future__ import annotations

import logging
import statistics
import time
from collections import deque
from dataclasses import dataclass

from gateway.discovery import access_log_target
from gateway.pipeline import Gateway

RECENT = 500
FIELDS = (
    "request_id",
    "key_id",
    "agent",
    "backend",
    "model",
    "outcome",
    "status",
    "finish_reason",
    "error",
    "input_tokens",
    "output_tokens",
    "credits",
    "first_event_ms",
    "duration_ms",
)


class Recent(logging.Handler):
    """Keeps the fields of the latest ``RECENT`` access log records."""

    def __init__(self, size: int = RECENT) -> None:
        super().__init__()
        self.lines: deque[dict[str, object]] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        fields = record.__dict__
        line: dict[str, object] = {"at": record.created}
        for name in FIELDS:
            value = fields.get(name)
            if isinstance(value, str | int | float | bool) or value is None:
                line[name] = value
        self.lines.append(line)

    def attach(self, gateway: Gateway) -> logging.Logger | None:
        """Listen to the access log the configuration names (None: it has none)."""
        target = access_log_target(gateway.config.filters)
        if target is None:
            return None
        logger = logging.getLogger(target[0])
        logger.addHandler(self)
        return logger


@dataclass(frozen=True, slots=True)
class BackendStats:
    """A backend's recent requests: how many, how many failed, latency, last error."""

    backend: str
    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    last_error: str
    last_error_at: float | None


def backend_stats(lines: list[dict[str, object]]) -> dict[str, BackendStats]:
    by: dict[str, list[dict[str, object]]] = {}
    for line in lines:
        if line.get("backend"):
            by.setdefault(str(line["backend"]), []).append(line)
    out = {}
    for backend, rows in by.items():
        times = sorted(t for r in rows if (t := _number(r.get("duration_ms"))) is not None)
        failed = [r for r in rows if r.get("outcome") == "failed"]
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))] if times else None
        last = failed[-1] if failed else None
        out[backend] = BackendStats(
            backend,
            len(rows),
            len(failed),
            statistics.median(times) if times else None,
            p95,
            str(last.get("error") or "") if last else "",
            _number(last.get("at")) if last else None,
        )
    return out


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def in_flight(gateway: Gateway, now: float | None = None) -> list[dict[str, object]]:
    """This process's requests holding a reservation, oldest first."""
    now = time.time() if now is None else now
    rows = [
        {
            "request_id": r.request_id,
            "key_id": r.key_id,
            "agent": r.agent,
            "backend": r.backend,
            "held": r.credits,
            "seconds": round(now - r.started_at, 1),
            "output_tokens": r.output_tokens,
        }
        for r in gateway.meter.in_flight()
    ]
    return sorted(rows, key=lambda row: -(_number(row["seconds"]) or 0))
