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
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

FORMATS = ("auto", "json", "text")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    [*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime", "taskName"]
)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller passed in ``extra=``, in their order."""
    return {
        k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
    }


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
        for key, value in extra_fields(record).items():
            line.setdefault(key, value)
        if record.exc_info:
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


def setup(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Send the root logger's records to ``stream`` (stderr) in format ``fmt``."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(fmt, stream))
    logging.basicConfig(level=level.upper(), handlers=[handler])
