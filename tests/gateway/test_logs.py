"""``gateway.logs``: JSON lines off a terminal, readable lines on one."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from datetime import UTC, datetime, timedelta
from unittest import mock

import orjson
import pytest
from aiohttp.http_exceptions import BadHttpMessage
from hypothesis import example, given
from hypothesis import strategies as st

from gateway import apikeys, logs
from gateway.redaction import Redactor


def record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("gateway.test")
    return logger.makeRecord(
        "gateway.test", logging.WARNING, __file__, 1, message, args or ("world",), None,
        extra=extra or None,
    )  # fmt: skip


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_line_has_the_standard_fields_and_the_extra_ones() -> None:
    line = logs.JsonFormatter().format(record(request_id="req_1", input_tokens=3, ratio=None))
    assert "\n" not in line
    obj = orjson.loads(line)
    assert obj["level"] == "warning" and obj["logger"] == "gateway.test"
    assert obj["message"] == "hello world"
    assert obj["time"].endswith("Z") and "T" in obj["time"]
    assert (obj["request_id"], obj["input_tokens"], obj["ratio"]) == ("req_1", 3, None)


def test_json_line_carries_the_traceback_on_one_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        rec = record()
        rec.exc_info = sys.exc_info()
    line = logs.JsonFormatter().format(rec)
    assert "\n" not in line
    assert "RuntimeError: boom" in orjson.loads(line)["exception"]


def test_json_line_survives_values_json_cannot_hold() -> None:
    obj = orjson.loads(logs.JsonFormatter().format(record(thing=object(), items={1, 2})))
    assert obj["thing"].startswith("<object")


def test_a_field_named_like_a_standard_one_does_not_replace_it() -> None:
    rec = record()
    rec.__dict__["level"] = "spoofed"
    assert orjson.loads(logs.JsonFormatter().format(rec))["level"] == "warning"


def test_text_line_appends_the_extra_fields() -> None:
    text = logs.TextFormatter().format(record(request_id="req_1", note="two words", gone=None))
    assert " WARNING gateway.test: hello world " in text
    assert text.endswith('request_id=req_1 note="two words" gone=-')


def test_auto_picks_text_on_a_terminal_and_json_elsewhere() -> None:
    assert isinstance(logs.formatter("auto", Terminal()), logs.TextFormatter)
    assert isinstance(logs.formatter("auto", io.StringIO()), logs.JsonFormatter)
    assert isinstance(logs.formatter("json", Terminal()), logs.JsonFormatter)
    assert isinstance(logs.formatter("text", io.StringIO()), logs.TextFormatter)
    with pytest.raises(ValueError):
        logs.formatter("xml", io.StringIO())


def test_setup_writes_json_lines_to_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # basicConfig acts only on a bare root
    monkeypatch.setattr(root, "level", root.level)
    out = io.StringIO()
    logs.setup("info", "auto", out)
    logging.getLogger("gateway.x").info("ready", extra={"port": 8080})
    logging.getLogger("gateway.x").debug("hidden")
    (line,) = out.getvalue().splitlines()
    assert orjson.loads(line)["port"] == 8080


# Redaction: whoever writes the record


KEY = apikeys.new_secret()
ADMIN_TOKEN = "admin-token-from-env-0123"


@pytest.fixture
def redacted_log(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """``logs.setup`` on a bare root logger, writing JSON lines to the returned stream."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    out = io.StringIO()
    logs.setup("debug", "json", out)
    logs.protect({ADMIN_TOKEN})
    return out


def test_a_raw_header_line_in_aiohttps_log_is_redacted_message_and_traceback(
    redacted_log: io.StringIO,
) -> None:
    # What aiohttp.server wrote for a header line with a NUL after the key.
    line = f"Authorization: Bearer {KEY}\x00x".encode()
    try:
        raise BadHttpMessage(f"Invalid header value char:\n\n  {line!r}\n  ^")
    except BadHttpMessage as exc:
        logging.getLogger("aiohttp.server").exception("Error handling %r", line, exc_info=exc)
    logging.getLogger("asyncio").error("lost %s and %s", ADMIN_TOKEN, {"x-api-key": KEY})
    logging.getLogger("gateway_plugins.x").warning("sent", extra={"headers": {"auth": KEY}})
    out = redacted_log.getvalue()
    assert len(out.splitlines()) == 3
    assert KEY[6:] not in out and ADMIN_TOKEN not in out
    first = orjson.loads(out.splitlines()[0])
    assert "BadHttpMessage" in first["exception"] and "[redacted]" in first["exception"]


def test_text_lines_are_redacted_too(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    out = Terminal()
    logs.setup("info", "text", out)
    try:
        raise ValueError(KEY)
    except ValueError:
        logging.getLogger("aiohttp.web_protocol").exception("key %s", KEY, extra={"k": KEY})
    assert KEY not in out.getvalue() and "ValueError: [redacted]" in out.getvalue()


def test_a_record_whose_arguments_do_not_fit_is_still_written_and_redacted(
    redacted_log: io.StringIO,
) -> None:
    logging.getLogger("plugin").warning("%s %s", KEY)  # one argument short
    (line,) = redacted_log.getvalue().splitlines()
    assert KEY not in line and "[redacted]" in orjson.loads(line)["message"]


# The access log's short way out (``log_fields``)


def _without_time(line: str) -> dict[str, object]:
    obj = orjson.loads(line)
    assert obj.pop("time").endswith("Z")
    return obj


FIELDS = {"request_id": "req_1", "key_id": "k1", "agent": f"a {KEY}", "tokens": 3, "ok": None}


def _only_ours(monkeypatch: pytest.MonkeyPatch) -> logging.Handler:
    """Leave the root logger with ``setup``'s handler alone (pytest adds its own)."""
    root = logging.getLogger()
    (ours,) = [h for h in root.handlers if isinstance(h, logs.LineHandler)]
    monkeypatch.setattr(root, "handlers", [ours])
    return ours


def _ours(out: str) -> list[str]:
    return [line for line in out.splitlines() if orjson.loads(line)["logger"] != "asyncio"]


def test_log_fields_writes_the_line_the_record_would_at_the_end_of_the_turn(
    redacted_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = _only_ours(monkeypatch)
    logger = logging.getLogger("gateway.requests")
    logger.info("request %s", "completed", extra=dict(FIELDS))  # through a LogRecord
    (by_record,) = redacted_log.getvalue().splitlines()

    class Counting(io.StringIO):
        writes = 0

        def write(self, text: str) -> int:
            self.writes += "gateway.requests" in text
            return super().write(text)

    async def three_lines() -> list[str]:
        for _ in range(3):
            logs.log_fields(logger, logging.INFO, "request %s", ("completed",), dict(FIELDS))
        held = _ours(out.getvalue())
        await asyncio.sleep(0)  # the turn ends
        return held

    out = Counting()
    handler.setStream(out)  # type: ignore[attr-defined]
    assert asyncio.run(three_lines()) == []
    lines = _ours(out.getvalue())
    assert out.writes == 1 and len(lines) == 3
    assert all(_without_time(line) == _without_time(by_record) for line in lines)
    assert KEY not in out.getvalue() and ADMIN_TOKEN not in out.getvalue()


def test_plain_fields_come_after_the_others_as_the_record_would_write_them(
    redacted_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = _only_ours(monkeypatch)
    logger = logging.getLogger("gateway.requests")
    plain: dict[str, int | float | bool | None] = {"status": 200, "ms": 1.5, "est": True}
    logger.info("request %s", "completed", extra=dict(FIELDS) | plain)
    (by_record,) = redacted_log.getvalue().splitlines()
    clash: dict[str, int | float | bool | None] = {"message": 1, **plain}  # the line's own

    async def two_lines() -> None:
        logs.log_fields(logger, logging.INFO, "request %s", ("completed",), dict(FIELDS), plain)
        logs.log_fields(logger, logging.INFO, "request %s", ("completed",), dict(FIELDS), clash)

    out = io.StringIO()
    handler.setStream(out)  # type: ignore[attr-defined]
    asyncio.run(two_lines())
    first, second = _ours(out.getvalue())
    assert list(orjson.loads(first)) == list(orjson.loads(by_record))
    assert _without_time(first) == _without_time(by_record) == _without_time(second)
    assert KEY not in out.getvalue()

    # Through a record (a second handler): the same fields, in the same order.
    extra = io.StringIO()
    other = logging.StreamHandler(extra)
    other.setFormatter(logs.JsonFormatter())
    monkeypatch.setattr(logging.getLogger(), "handlers", [handler, other])
    handler.setStream(out := io.StringIO())  # type: ignore[attr-defined]
    logs.log_fields(logger, logging.INFO, "request %s", ("completed",), dict(FIELDS), plain)
    (recorded,) = _ours(out.getvalue())
    assert list(orjson.loads(recorded)) == list(orjson.loads(by_record))
    assert _without_time(recorded) == _without_time(by_record)


def test_a_record_after_held_lines_comes_after_them(
    redacted_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    _only_ours(monkeypatch)

    async def held_then_record() -> None:
        logs.log_fields(logging.getLogger("gateway.requests"), logging.INFO, "one", (), {})
        logging.getLogger("gateway.x").warning("two")

    asyncio.run(held_then_record())
    assert [orjson.loads(x)["message"] for x in _ours(redacted_log.getvalue())] == ["one", "two"]


def test_lines_are_held_in_each_loop_and_written_at_once_where_none_runs() -> None:
    """The loop is kept from line to line (``asyncio.get_running_loop`` is a system call
    on Python 3.11), never used after it stopped, nor from another thread."""
    handler = _handler()
    stream = handler.stream

    def line(request_id: str) -> None:
        handler.line(logging.INFO, "gateway.requests", "request", {"request_id": request_id})

    def written() -> list[str]:
        return [orjson.loads(text)["request_id"] for text in stream.getvalue().splitlines()]

    def line_and_look(request_id: str) -> list[str]:
        line(request_id)
        return written()

    async def in_a_loop(first: str, second: str, elsewhere: str) -> list[list[str]]:
        line(first)
        seen = [written()]  # held
        await asyncio.sleep(0)
        line(second)
        seen.append(written())  # the first written at the end of its turn, the second held
        await asyncio.sleep(0)
        seen.append(await asyncio.to_thread(line_and_look, elsewhere))  # no loop there: at once
        return seen

    assert asyncio.run(in_a_loop("a1", "a2", "a3")) == [[], ["a1"], ["a1", "a2", "a3"]]
    line("b")  # no loop runs any more: at once
    assert written()[-1] == "b"
    assert asyncio.run(in_a_loop("c1", "c2", "c3"))[-1][-3:] == ["c1", "c2", "c3"]


def test_log_fields_goes_through_logging_for_any_other_handler(
    redacted_log: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "gateway.requests")
    logger = logging.getLogger("gateway.requests")
    logs.log_fields(logger, logging.INFO, "request %s", ("failed",), {"status": 502})
    (record,) = caplog.records
    assert record.getMessage() == "request failed" and record.__dict__["status"] == 502
    assert orjson.loads(redacted_log.getvalue())["status"] == 502  # written at once


def written_by_datetime(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@given(st.floats(min_value=-1e10, max_value=1e10, allow_nan=False))
@example(1_700_000_000.9999995)  # rounds up into the next second
@example(1_700_000_000.9999994)
@example(1_700_000_000.0005)
@example(1.0000005)  # a tie, to even
@example(1.0000015)
@example(-0.0000001)
def test_a_lines_time_is_what_datetime_writes(created: float) -> None:
    assert logs._iso(created) == written_by_datetime(created)


def test_a_lines_time_follows_the_clock_across_seconds() -> None:
    for created in (1_700_000_000.25, 1_700_000_001.5, 1_700_000_000.75, 1_800_000_000.0):
        assert logs._iso(created) == written_by_datetime(created)


def written_from_nanoseconds(ns: int) -> str:
    """The time ``ns`` (since the epoch) to the millisecond, in integer arithmetic."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@given(st.integers(min_value=0, max_value=10**19))
@example(1_700_000_000_999_999_999)  # the last nanosecond of a second
@example(1_700_000_001_000_000_000)
@example(1_700_000_000_000_999_999)
@example(1_700_000_000_010_000_000)
@example(0)
def test_the_time_now_is_the_clocks_millisecond(ns: int) -> None:
    with mock.patch.object(logs.time, "time_ns", return_value=ns):
        assert logs._now() == written_from_nanoseconds(ns)


def test_the_time_now_follows_the_clock_across_seconds() -> None:
    for ns in (1_700_000_000_250_000_000, 1_700_000_001_005_000_000, 1_700_000_000_750_000_000):
        with mock.patch.object(logs.time, "time_ns", return_value=ns):
            assert logs._now() == written_from_nanoseconds(ns)


# The access log's lines put together from their shape (``LineHandler.line``)


def _handler(*secrets: str) -> logs.LineHandler:
    return logs.LineHandler(io.StringIO(), logs.RedactFilter(Redactor(secrets)))


def _held(handler: logs.LineHandler) -> str:
    """The one line ``handler`` wrote (at once: no event loop runs here)."""
    stream = handler.stream
    line, end = stream.getvalue().split("\n")  # not splitlines: a line may hold U+2028
    assert end == ""
    stream.seek(0)
    stream.truncate()
    return line


def _after_time(line: str) -> str:
    assert line.startswith('{"time":"') and line[33:35] == '",'
    return line[35:]


_NAMES = st.sampled_from(["request_id", "key_id", "agent", "message", "level", "status", "x"])
_TEXTS = st.one_of(
    st.sampled_from(["", "mock", f"a {KEY}", ADMIN_TOKEN, "Bearer abc", 'q"uote\n', "é"]),
    st.text(max_size=140),
)
_VALUES = st.one_of(
    _TEXTS,
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(_TEXTS, max_size=2),
)
_PLAIN_VALUES = st.one_of(st.none(), st.integers(-(2**60), 2**60), st.booleans(), st.floats())


_FIELDS = st.dictionaries(_NAMES, _VALUES, max_size=5)


@given(
    fields=_FIELDS | st.builds(lambda rid, rest: {"request_id": rid, **rest}, _TEXTS, _FIELDS),
    plain=st.none() | st.dictionaries(_NAMES, _PLAIN_VALUES, max_size=3),
    message=st.sampled_from(["request completed", f"got {KEY}", "x" * 200]),
)
@example(
    fields={"request_id": "req_1", "key_id": "k1", "agent": f"a {KEY}", "x": None},
    plain={"status": 200},
    message="request completed",
)
@example(fields={"request_id": "req_1"}, plain={"status": 1}, message="request completed")
@example(fields={"request_id": "req_1", "agent": "a"}, plain={"agent": 1}, message="m")
@example(fields={"request_id": "req_1", "agent": 1}, plain=None, message="m")
@example(fields={"request_id": "req_1", "agent": True}, plain=None, message="m")
def test_a_line_made_from_its_shape_is_the_line_made_whole(
    fields: dict[str, object], plain: dict[str, logs.Plain] | None, message: str
) -> None:
    handler = _handler(ADMIN_TOKEN)
    whole = handler._encoded("INFO", "gateway.requests", message, fields, plain)
    for _ in range(2):  # the shape made, then the shape kept
        handler.line(logging.INFO, "gateway.requests", message, fields, plain)
        assert _after_time(_held(handler)) == _after_time(whole)
    assert KEY not in whole and ADMIN_TOKEN not in whole


def test_lines_of_one_shape_share_its_text_and_differ_in_what_changes() -> None:
    handler = _handler()
    fields = {"request_id": "req_1", "key_id": "k1", "agent": "a", "outcome": "completed"}
    handler.line(logging.INFO, "gateway.requests", "request completed", fields, {"status": 200})
    first = _held(handler)
    fields = {**fields, "request_id": "req_2"}
    handler.line(logging.INFO, "gateway.requests", "request completed", fields, {"status": 502})
    second = _held(handler)
    assert len(handler._shapes) == 1
    assert orjson.loads(first) | {"time": 0} == {
        "time": 0, "level": "info", "logger": "gateway.requests",
        "message": "request completed", "request_id": "req_1", "key_id": "k1", "agent": "a",
        "outcome": "completed", "status": 200,
    }  # fmt: skip
    assert orjson.loads(second)["request_id"] == "req_2"
    assert orjson.loads(second)["status"] == 502


@pytest.mark.parametrize("other", [None, 7, ["req_2"]])
def test_a_request_id_of_another_type_takes_the_whole_way(other: object) -> None:
    handler = _handler()
    fields: dict[str, object] = {"request_id": "req_1", "agent": "a"}
    handler.line(logging.INFO, "gateway.requests", "request completed", fields)
    _held(handler)  # the shape is kept
    fields["request_id"] = other  # not part of the shape's key
    whole = handler._encoded("INFO", "gateway.requests", "request completed", fields, None)
    handler.line(logging.INFO, "gateway.requests", "request completed", fields)
    assert _after_time(_held(handler)) == _after_time(whole)


def test_a_secret_learnt_later_is_redacted_from_a_kept_shape() -> None:
    handler = _handler()
    fields = {"request_id": "req_1", "agent": "agent-secret-value"}
    handler.line(logging.INFO, "gateway.requests", "request completed", fields)
    assert "agent-secret-value" in _held(handler)
    handler.redact.redactor.add({"agent-secret-value"})
    handler.line(logging.INFO, "gateway.requests", "request completed", fields)
    assert "agent-secret-value" not in _held(handler)


def test_a_level_renamed_later_is_written_with_its_new_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = _handler()
    fields = {"request_id": "req_1", "agent": "a"}
    handler.line(25, "gateway.requests", "request completed", fields)
    assert orjson.loads(_held(handler))["level"] == "level 25"
    monkeypatch.setitem(logging._levelToName, 25, "NOTICE")  # as logging.addLevelName does
    handler.line(25, "gateway.requests", "request completed", fields)
    assert orjson.loads(_held(handler))["level"] == "notice"
