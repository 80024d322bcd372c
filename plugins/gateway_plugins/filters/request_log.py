"""``request_log``: the per-request log line, written when the request's stream ends.

One record per request on the logger ``gateway.requests`` (one more, ``outcome``
``failed``, for each backend that failed before answering and was replaced by a
fallback). Its message is ``request <outcome>``; its fields (``extra=``, so the
JSON log format puts them in the line's object, the text format appends them as
``key=value``): request id, key id (never the key), agent, backend, upstream
model, outcome (``completed``, ``failed``, or ``abandoned`` when the client
left), finish reason or error code, the HTTP status (200 when completed, the
error's when failed, 499 when abandoned, as nginx logs a client that closed
the connection), token counts
(``estimated`` when the upstream did not report them), credits charged for that
usage at the route's prices, time to the first event and total time in
milliseconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway.plugin import (
    Batch,
    CallContext,
    Completed,
    Failed,
    FilterPlugin,
    TextDelta,
    Usage,
    log_fields,
)

_LEVELS = ("debug", "info", "warning")
CLIENT_CLOSED = 499  # nginx's status for a client that left before the answer ended


def _level(value: str) -> str | None:
    return None if value in _LEVELS else f"must be one of {', '.join(_LEVELS)}"


@dataclass(frozen=True, slots=True)
class RequestLogOptions:
    logger: str = "gateway.requests"
    level: str = field(default="info", metadata={"check": _level})


class RequestLog:
    def __init__(self, options: RequestLogOptions) -> None:
        self._log = logging.getLogger(options.logger)
        self._level = logging.getLevelNamesMapping()[options.level.upper()]

    async def wrap(self, batches: AsyncIterator[Batch], ctx: CallContext) -> AsyncIterator[Batch]:
        started = time.monotonic()
        first: float | None = None
        usage: Usage | None = None
        line: dict[str, object] = {"outcome": "abandoned"}
        status = CLIENT_CLOSED
        try:
            async for batch in batches:
                if first is None:
                    first = time.monotonic()
                for event in batch:
                    if type(event) is TextDelta:  # most events: none of those below
                        continue
                    if isinstance(event, Usage):
                        usage = event
                    elif isinstance(event, Completed):
                        line = {"outcome": "completed", "finish_reason": event.finish_reason}
                        status = 200
                    elif isinstance(event, Failed):
                        error = event.error
                        line = {"outcome": "failed", "error": error.code or error.type}
                        status = error.status
                yield batch
        finally:
            if self._log.isEnabledFor(self._level):
                ended = time.monotonic()
                fields = {
                    "request_id": ctx.request_id,
                    "key_id": ctx.key_id,
                    "agent": ctx.agent,
                    "backend": ctx.backend,
                    "model": ctx.model,
                    **line,
                }
                plain: dict[str, int | float | bool | None] = {  # nothing to redact
                    "status": status,
                    "input_tokens": usage.input_tokens if usage else 0,
                    "output_tokens": usage.output_tokens if usage else 0,
                    "cached_input_tokens": usage.cached_input_tokens if usage else 0,
                    "reasoning_tokens": usage.reasoning_tokens if usage else 0,
                    "estimated": usage.estimated if usage else True,
                    "credits": usage.credits if usage else None,
                    "first_event_ms": round((first - started) * 1000, 2) if first else None,
                    "duration_ms": round((ended - started) * 1000, 2),
                }
                outcome = (line["outcome"],)
                log_fields(self._log, self._level, "request %s", outcome, fields, plain)


PLUGIN = FilterPlugin(options=RequestLogOptions, create=RequestLog)
