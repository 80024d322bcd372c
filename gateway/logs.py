"""Log output: JSON lines for machines, plain lines for people.

``json``: one JSON object per record and line, with ``time`` (UTC, ISO 8601),
``level``, ``logger``, ``message``, every field passed in ``extra=`` (the
per-request line of the ``request_log`` filter carries its fields this way),
and ``exception`` with the traceback when there is one. ``text``: ``time
LEVEL logger: message``, then the extra fields as ``key=value``. ``auto`` (the
default of ``gateway serve --log-format``) picks ``text`` when stderr is a
terminal, else ``json``.

Nothing secret is logged by the gateway: API keys appear only as their key
id, and upstream secrets (read from the environment) never enter a message.
Other code can be careless (aiohttp quotes a malformed header line, key and
all), so every record also passes ``RedactFilter`` on the way out: its message,
traceback, stack and extra fields are scrubbed by ``gateway.redaction`` before
any formatter sees them. ``protect`` teaches it the configured secrets.

The access log (a line per request) has a shorter way out, ``log_fields``: when
the only handler its records would reach is the one ``setup`` installed, in the
JSON format, with no filter on the way, the line is built at once (the same
JSON, the same redaction) instead of through a ``LogRecord``, the handler's
lock and its formatter, and it is written with the other lines made in the same
turn of the event loop, in one write, at the end of that turn. What its lines
repeat (all but the time, the request id and the numbers) is redacted and encoded
once, and kept (``LineHandler.line``). Any other
handler attached (to the root logger or the access log's own), a filter, or the
text format, and the line goes through ``logging`` as any record does.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from gateway.redaction import Redactor

FORMATS = ("auto", "json", "text")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    [*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime", "taskName"]
)


_PLAIN = frozenset({int, float, bool, type(None)})  # nothing in them to scrub
Plain = int | float | bool | None
_EXTRA = "_extra_fields"  # the names RedactFilter found, so the formatter need not look again


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller passed in ``extra=``, in their order."""
    attrs = record.__dict__
    names = attrs.get(_EXTRA)
    if names is not None:
        return {k: attrs[k] for k in names}
    return {k: v for k, v in attrs.items() if k not in _STANDARD and not k.startswith("_")}


def _time(record: logging.LogRecord) -> str:
    return _iso(record.created)


def _iso(created: float) -> str:
    """``created`` as ``2026-12-06T05:03:09.123Z``: what
    ``datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")`` writes
    (with ``Z``), the date and time to the second made once a second.

    The second and the microseconds are rounded as ``fromtimestamp`` rounds them (the
    fraction to the nearest microsecond, ties to even, which may carry into the next
    second); the milliseconds are the microseconds' first three digits, as there."""
    fraction, whole = math.modf(created)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1.0, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1.0, micros + 1_000_000
    return f"{_second_text(int(whole))}.{micros // 1000:03d}Z"


def _now() -> str:
    """The time now, as ``_iso(time.time())`` writes it: the clock's nanoseconds to the
    millisecond (``time.time_ns``, no float to round), the milliseconds the digits after
    the ``1`` of ``1000 + ms`` (an integer's text: cheaper than a ``:03d`` format)."""
    second, millis = divmod(time.time_ns() // 1_000_000, 1000)
    return _second_text(second) + "." + str(1000 + millis)[1:] + "Z"


def _second_text(second: int) -> str:
    """The UTC date and time of ``second`` (Unix time) to the second, made once a
    second for ``_iso`` and ``_now``: the lines of one second share it."""
    global _second
    if _second[0] != second:
        moment = datetime.fromtimestamp(second, UTC).replace(tzinfo=None)
        _second = (second, moment.isoformat(timespec="seconds"))
    return _second[1]


_second: tuple[int | None, str] = (None, "")  # the second written last, as text


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module's doc)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = extra_fields(record)
        if line.keys().isdisjoint(fields):  # the usual case: no field named like these
            line.update(fields)
        else:
            for key, value in fields.items():
                line.setdefault(key, value)
        if record.exc_text:  # set, and scrubbed, by RedactFilter
            line["exception"] = record.exc_text
        elif record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...`` (see the module's doc)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = extra_fields(record)
        if not fields:
            return text
        pairs = " ".join(f"{k}={_text(v)}" for k, v in fields.items())
        head, newline, rest = text.partition("\n")  # a traceback stays below the line
        return f"{head} {pairs}{newline}{rest}"


def _text(value: object) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return orjson.dumps(text).decode() if (" " in text or not text) else text


def formatter(fmt: str, stream: TextIO) -> logging.Formatter:
    """The formatter for ``fmt`` (one of ``FORMATS``) writing to ``stream``."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt == "auto":
        isatty = getattr(stream, "isatty", None)
        fmt = "text" if isatty is not None and isatty() else "json"
    return JsonFormatter() if fmt == "json" else TextFormatter()


class RedactFilter(logging.Filter):
    """Scrubs each record in place before it is formatted (see the module's doc).

    A filter of the handler, not of a logger: a logger's filters do not see the
    records that reach the handler from other loggers (aiohttp's, asyncio's).
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        scrub = self.redactor.scrub
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: keep what can be kept
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        fields = extra_fields(record)
        attrs, scrub_value = record.__dict__, self.redactor.scrub_value
        for key, value in fields.items():
            if type(value) is str:
                attrs[key] = scrub(value)
            elif type(value) not in _PLAIN:
                attrs[key] = scrub_value(value)
        attrs[_EXTRA] = tuple(fields)
        return True


_TRACEBACKS = logging.Formatter()


@dataclass(frozen=True, slots=True)
class _Shape:
    """What lines of one shape share (``LineHandler.line``): the JSON text after their
    time up to the request id's value (``head``), and after it (``tail``), and the names
    the line holds before ``plain`` (a ``plain`` field named like one is not added)."""

    head: str
    tail: str
    names: frozenset[str]


_UNKNOWN: Any = object()  # a shape not made yet
# The access log's shapes kept (``LineHandler.line``): at most this many, of texts
# at most this long (the lengths the redactor keeps its scrubbed texts for).
_KEPT = 1024
_KEPT_CHARS = 128
_LINE_NAMES = frozenset(("time", "level", "logger", "message"))  # a JSON line's own


class LineHandler(logging.StreamHandler[TextIO]):
    """The handler ``setup`` installs: a ``StreamHandler`` that also takes prepared
    JSON lines (``log_fields``), held until the end of the event loop's turn and
    written together. A record it handles, a ``flush`` or a ``close`` writes the held
    lines first, so lines keep their order."""

    def __init__(self, stream: TextIO, redact: RedactFilter) -> None:
        super().__init__(stream)
        self.redact = redact
        self._held: list[str] = []
        # Access log lines' shapes (``line``), redacted with the secrets of the
        # redactor's generation ``_made_with``.
        self._shapes: dict[tuple[object, ...], _Shape | None] = {}
        self._made_with = -1
        # The event loop the last held line was written from, and its thread (see
        # ``_hold``): on Python 3.11 each ``asyncio.get_running_loop()`` is a
        # ``getpid`` system call.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0

    def direct(self) -> bool:
        """Whether a line may skip the record: JSON, and no filter but the redaction."""
        return type(self.formatter) is JsonFormatter and self.filters == [self.redact]

    def line(
        self,
        levelno: int,
        name: str,
        message: str,
        fields: Mapping[str, Any],
        plain: Mapping[str, Plain] | None = None,
    ) -> None:
        """Hold the JSON line ``JsonFormatter`` would write of this record, redacted:
        ``fields``, then ``plain`` (numbers, booleans and None, nothing to scrub, added
        as they are, in one step).

        The access log's lines differ in their time, request id (their first field)
        and ``plain`` only: the rest (level, logger, message, and the other fields: key
        id, agent, backend, model, outcome...) repeats, so its JSON text, redacted, is
        made once for each such rest and kept (``_Shape``); a line is then its time, that
        text with the request id in its place, and ``plain`` encoded at once. The same
        text as ``orjson.dumps`` of the whole line (``_encoded``, the way of any line
        without that shape)."""
        level = logging.getLevelName(levelno)
        values = tuple(fields.values())
        key = (level, name, message, tuple(fields), values[1:])
        redactor = self.redact.redactor
        if self._made_with != redactor.generation:  # new secrets: scrub everything again
            self._shapes.clear()
            self._made_with = redactor.generation
        try:
            shape = self._shapes.get(key, _UNKNOWN)
        except TypeError:  # a value that cannot be a key (a list, a dict): no shape kept
            shape = None
        if shape is _UNKNOWN:
            shape = self._shape(key, level, name, message, fields)
        if (
            shape is None
            or type(values[0]) is not str  # not in the key: a request id of another type
            or (plain and not shape.names.isdisjoint(plain))
        ):
            text = self._encoded(level, name, message, fields, plain)
        else:
            rid = orjson.dumps(redactor.scrub_request_id(values[0])).decode()
            rest = "," + orjson.dumps(plain, default=str).decode()[1:] if plain else "}"
            text = f'{{"time":"{_now()}",{shape.head}{rid}{shape.tail}{rest}'
        held = self._held
        held.append(text)
        if len(held) == 1:
            self._hold()

    def _hold(self) -> None:
        """Have the held lines written at the end of this turn of the running loop, or
        now if this thread runs none. The loop of the last time, and its thread, are
        kept, and the loop asked whether it still runs, instead of calling
        ``asyncio.get_running_loop`` each time: a thread runs one loop at a time, so
        the loop this thread ran last, if it still runs, is the one running this code
        (unless it was stopped and run again in another thread: no loop of the
        gateway moves between threads)."""
        loop = self._loop
        if loop is None or self._thread != threading.get_ident() or not loop.is_running():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop here: write now
                self._loop = None
                self._write_held()
                return
            self._loop, self._thread = loop, threading.get_ident()
        loop.call_soon(self._write_held)

    def _shape(
        self,
        key: tuple[object, ...],
        level: str,
        name: str,
        message: str,
        fields: Mapping[str, Any],
    ) -> _Shape | None:
        """The shape of lines like this one, kept; None if they have none (see ``line``):
        their first field is not a request id (text), or another is neither text nor
        None. Lines with a long message or field (over ``_KEPT_CHARS``) are not kept."""
        names = tuple(fields)
        values = tuple(fields.values())
        if len(message) > _KEPT_CHARS or any(
            type(v) is str and len(v) > _KEPT_CHARS for v in values[1:]
        ):
            return None
        if (
            not names
            or names[0] != "request_id"
            or type(values[0]) is not str
            or not all(v is None or type(v) is str for v in values[1:])
        ):
            shape = None
        else:
            line = self._redacted(level, name, message, fields)
            head = {k: line[k] for k in ("level", "logger", "message")}
            rest = {k: v for k, v in line.items() if k not in _LINE_NAMES and k != "request_id"}
            tail = orjson.dumps(rest).decode()[1:-1]
            shape = _Shape(
                orjson.dumps(head).decode()[1:-1] + ',"request_id":',
                "," + tail if tail else "",
                frozenset(line),
            )
        if len(self._shapes) >= _KEPT:
            self._shapes.clear()
        self._shapes[key] = shape
        return shape

    def _redacted(
        self, level: str, name: str, message: str, fields: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The line without its time and ``plain``: ``JsonFormatter``'s, redacted."""
        redactor = self.redact.redactor
        scrub, scrub_value = redactor.scrub, redactor.scrub_value
        line: dict[str, Any] = {
            "time": None,
            "level": level.lower(),
            "logger": name,
            "message": scrub(message),
        }
        for key, value in fields.items():
            if key in line:
                continue
            if key == "request_id" and type(value) is str:  # new on every line
                line[key] = redactor.scrub_request_id(value)
            elif type(value) is str:
                line[key] = scrub(value)
            elif type(value) in _PLAIN:
                line[key] = value
            else:
                line[key] = scrub_value(value)
        return line

    def _encoded(
        self,
        level: str,
        name: str,
        message: str,
        fields: Mapping[str, Any],
        plain: Mapping[str, Plain] | None,
    ) -> str:
        """The line as ``JsonFormatter`` writes it, made as it makes it."""
        line = self._redacted(level, name, message, fields)
        line["time"] = _now()
        if plain:
            if line.keys().isdisjoint(plain):
                line.update(plain)
            else:
                for key, value in plain.items():
                    line.setdefault(key, value)
        return orjson.dumps(line, default=str).decode()

    def _write_held(self) -> None:
        if not self._held:
            return
        with self.lock:  # type: ignore[union-attr]
            self._write_held_locked()

    def _write_held_locked(self) -> None:
        held, self._held = self._held, []
        if not held:
            return
        try:
            self.stream.write("\n".join(held) + self.terminator)
            self.stream.flush()
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "access log lines", "args": None}))

    def emit(self, record: logging.LogRecord) -> None:
        if self._held:  # called with the lock held
            self._write_held_locked()
        super().emit(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_held_locked()
        super().flush()


def log_fields(
    logger: logging.Logger,
    level: int,
    message: str,
    args: tuple[object, ...],
    fields: dict[str, Any],
    plain: dict[str, Plain] | None = None,
) -> None:
    """``logger.log(level, message, *args, extra=fields | plain)``, the short way when it
    may be taken (see the module's doc): the same line, written at the end of this turn.

    ``plain``, fields after ``fields`` whose values are numbers, booleans or None,
    holds nothing to redact: the short way adds them to the line as they are, without
    looking at each."""
    if not logger.isEnabledFor(level):
        return
    handler = _sole_handler(logger)
    if handler is None or level < handler.level or not handler.direct():
        logger.log(level, message, *args, extra=fields if plain is None else fields | plain)
    else:
        handler.line(level, logger.name, message % args if args else message, fields, plain)


def _sole_handler(logger: logging.Logger) -> LineHandler | None:
    """The one handler ``logger``'s records reach, if it is a ``LineHandler`` and no
    logger on the way filters them; else None."""
    found: LineHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if found is not None or type(handler) is not LineHandler:
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    return found


def setup(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Send the root logger's records to ``stream`` (stderr) in format ``fmt``, redacted."""
    stream = stream or sys.stderr
    redact = RedactFilter(Redactor())
    handler = LineHandler(stream, redact)
    handler.setFormatter(formatter(fmt, stream))
    handler.addFilter(redact)
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # No format here writes where a record was made, nor its thread or process: the
    # logging HOWTO's optimisations spare each record a walk up the stack (findCaller),
    # a getpid and a thread lookup (the access log writes one record per request).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


def protect(secrets: set[str]) -> None:
    """Redact these secrets from every record the root logger's handlers write."""
    for handler in logging.getLogger().handlers:
        for found in handler.filters:
            if isinstance(found, RedactFilter):
                found.redactor.add(secrets)
