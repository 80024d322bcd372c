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
    observed,
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
    """An observing filter (``ObservingFilter``): it never changes the stream, so the
    gateway shows it each batch in the contract check's step, without a layer of its own."""

    def __init__(self, options: RequestLogOptions) -> None:
        self._log = logging.getLogger(options.logger)
        self._level = logging.getLevelNamesMapping()[options.level.upper()]

    def observe(self, ctx: CallContext) -> RequestLine:
        return RequestLine(self._log, self._level, ctx)

    def wrap(self, batches: AsyncIterator[Batch], ctx: CallContext) -> AsyncIterator[Batch]:
        return observed(batches, self.observe(ctx))


class RequestLine:
    """One request's line: what its stream showed, written when the stream ends."""

    __slots__ = ("_ctx", "_first", "_level", "_line", "_log", "_started", "_status", "_usage")

    def __init__(self, log: logging.Logger, level: int, ctx: CallContext) -> None:
        self._log = log
        self._level = level
        self._ctx = ctx
        self._started = time.monotonic()
        self._first: float | None = None
        self._usage: Usage | None = None
        self._line: dict[str, object] = {"outcome": "abandoned"}
        self._status = CLIENT_CLOSED

    def seen(self, batch: Batch) -> None:
        if self._first is None:
            self._first = time.monotonic()
        for event in batch:
            if type(event) is TextDelta:  # most events: none of those below
                continue
            if isinstance(event, Usage):
                self._usage = event
            elif isinstance(event, Completed):
                self._line = {"outcome": "completed", "finish_reason": event.finish_reason}
                self._status = 200
            elif isinstance(event, Failed):
                error = event.error
                self._line = {"outcome": "failed", "error": error.code or error.type}
                self._status = error.status

    def end(self) -> None:
        if not self._log.isEnabledFor(self._level):
            return
        ended = time.monotonic()
        ctx, usage, line, started, first = (
            self._ctx,
            self._usage,
            self._line,
            self._started,
            self._first,
        )
        fields = {
            "request_id": ctx.request_id,
            "key_id": ctx.key_id,
            "agent": ctx.agent,
            "backend": ctx.backend,
            "model": ctx.model,
            **line,
        }
        plain: dict[str, int | float | bool | None] = {  # nothing to redact
            "status": self._status,
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
