from __future__ import annotations

import logging
from typing import Any

import pytest
from gateway_plugins.filters.request_log import RequestLog, RequestLogOptions

from gateway.errors import UpstreamError
from gateway.events import Completed, Event, Failed, TextDelta, Usage
from gateway.logs import extra_fields
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
