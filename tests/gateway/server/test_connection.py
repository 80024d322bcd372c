"""``gateway.server.connection``: a client fault's reason never quotes the client's bytes."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    BadStatusLine,
    ContentLengthError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
)

from gateway.server.connection import fault_of

SECRET = "sk-gw-0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
RAW = f"Authorization: Bearer {SECRET}\x00".encode()


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (LineTooLong(RAW[:100] + b"...", 8190), "line_too_long"),
        (BadHttpMethod(repr(RAW)), "bad_request_line"),
        (BadStatusLine(repr(RAW)), "bad_request_line"),
        (InvalidURLError(f"Invalid URL {RAW!r}"), "bad_request_line"),
        (InvalidHeader(RAW), "bad_header"),
        (ContentLengthError(f"Not enough data: {RAW!r}"), "bad_body"),
        (web.RequestPayloadError(f"broken {RAW!r}"), "bad_body"),
        (BadHttpMessage(f"Invalid header value char:\n\n  {RAW!r}\n  ^"), "bad_request"),
        (BadHttpMessage(f"{SECRET} is not: anything"), "bad_request"),  # no plain phrase
        (ConnectionAbortedError(SECRET), "aborted"),
    ],
)
def test_the_reason_is_fixed_text(exc: BaseException, kind: str) -> None:
    got, reason = fault_of(exc)
    assert got == kind
    assert SECRET[6:20] not in reason and "\\x" not in reason


def test_a_plain_phrase_from_the_parser_is_kept_for_the_client() -> None:
    exc = BadHttpMessage("Unexpected whitespace after header value:\n\n  b'  more'\n    ^")
    assert fault_of(exc)[1] == "the request is malformed: Unexpected whitespace after header value"
    assert fault_of(LineTooLong(b"x", 1024))[1].endswith("(at most 1024 bytes)")
