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
"""

from __future__ import annotations

import logging
import sys
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
_EXTRA = "_extra_fields"  # the names RedactFilter found, so the formatter need not look again


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller passed in ``extra=``, in their order."""
    attrs = record.__dict__
    names = attrs.get(_EXTRA)
    if names is not None:
        return {k: attrs[k] for k in names}
    return {k: v for k, v in attrs.items() if k not in _STANDARD and not k.startswith("_")}


def _time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


def setup(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Send the root logger's records to ``stream`` (stderr) in format ``fmt``, redacted."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(fmt, stream))
    handler.addFilter(RedactFilter(Redactor()))
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
