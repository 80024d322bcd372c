from __future__ import annotations

import logging
from typing import Any

import pytest
from gateway_plugins.filters.request_log import RequestLog, RequestLogOptions

from gateway.errors import UpstreamError
from gateway.events import Completed, Event, Failed, TextDelta, Usage
from gateway.logs import extra_fields
from gateway.plugin import ObservingFilter
from gateway.route import Route
from tests.gateway.factories import batches, collect, context, pricing


def fields(record: logging.LogRecord) -> dict[str, Any]:
    return extra_fields(record)


async def test_one_line_per_request_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    # Metering, which the filter wraps, sets the charge on the usage it passes on.
    events: list[Event] = [TextDelta("a"), Usage(5, 2, credits=9), Completed("length")]
    ctx = context(route=Route(backend="echo", pricing=pricing("1", "2")))
    with caplog.at_level(logging.INFO, logger="gateway.requests"):
        out = await collect(RequestLog(RequestLogOptions()).wrap(batches(events), ctx))
    assert out == events
    (record,) = caplog.records
    assert record.getMessage() == "request completed"
    line = fields(record)
    assert line["request_id"] == "req_test" and line["key_id"] == "key_test"
    assert (line["outcome"], line["finish_reason"], line["status"]) == ("completed", "length", 200)
    assert (line["input_tokens"], line["output_tokens"], line["estimated"]) == (5, 2, False)
    assert line["credits"] == 9
    assert line["duration_ms"] >= 0 and line["first_event_ms"] is not None


async def test_failed_and_abandoned(caplog: pytest.LogCaptureFixture) -> None:
    log = RequestLog(RequestLogOptions(level="warning"))
    with caplog.at_level(logging.INFO, logger="gateway.requests"):
        await collect(log.wrap(batches([Failed(UpstreamError("x"))]), context()))
        wrapped = log.wrap(batches([TextDelta("a"), TextDelta("b"), Completed()]), context())
        await anext(wrapped)
        await wrapped.aclose()  # type: ignore[attr-defined]
    failed, abandoned = (fields(r) for r in caplog.records)
    assert (failed["outcome"], failed["error"], failed["status"]) == (
        "failed",
        "upstream_error",
        502,
    )
    assert abandoned["outcome"] == "abandoned" and abandoned["credits"] is None
    assert abandoned["status"] == 499  # nginx's "client closed request"
    assert all(r.levelno == logging.WARNING for r in caplog.records)


STREAMS: list[list[Event]] = [
    [TextDelta("a"), Usage(5, 2, credits=9), Completed("length")],
    [Failed(UpstreamError("x"))],
    [Usage(3, 0, estimated=True, credits=1), Failed(UpstreamError("y", code="c"))],
]


def _same_line(record: logging.LogRecord) -> tuple[str, dict[str, Any]]:
    line = fields(record)
    times = (line.pop("duration_ms"), line.pop("first_event_ms"))
    assert times[0] >= 0 and (times[1] is None or times[1] >= 0)
    return record.getMessage(), line


@pytest.mark.parametrize("events", STREAMS)
@pytest.mark.parametrize("leave_after", [None, 0, 1])
async def test_observing_writes_the_line_wrap_writes(
    events: list[Event], leave_after: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    """``observe`` (the gateway's way when nothing after it changes the stream): the
    same line as ``wrap``, on every way out, a client that leaves included."""
    shown = events if leave_after is None else events[: leave_after + 1]
    log = RequestLog(RequestLogOptions())
    with caplog.at_level(logging.INFO, logger="gateway.requests"):
        wrapped = log.wrap(batches(events), context())
        for _ in shown:
            await anext(wrapped)
        await wrapped.aclose()  # type: ignore[attr-defined]
        observer = log.observe(context())
        for event in shown:
            observer.seen((event,))
        observer.end()
    by_wrap, by_observer = (_same_line(r) for r in caplog.records)
    assert by_observer == by_wrap
    if len(shown) < len(events):
        assert by_wrap[1]["outcome"] == "abandoned" and by_wrap[1]["status"] == 499


async def test_an_observer_that_saw_nothing_logs_an_abandoned_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="gateway.requests"):
        RequestLog(RequestLogOptions()).observe(context()).end()
    (record,) = caplog.records
    line = fields(record)
    assert (line["outcome"], line["status"], line["first_event_ms"]) == ("abandoned", 499, None)


def test_request_log_is_an_observing_filter() -> None:
    assert isinstance(RequestLog(RequestLogOptions()), ObservingFilter)
