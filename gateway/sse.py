"""Server-sent events: frames out, and an incremental decoder for upstream streams.

The gateway writes SSE itself instead of using aiohttp-sse: it needs each
frame encoded once and written whole in one write, with no ``id:`` lines and
no pings it did not ask for, which is a few lines of code.

The decoder follows the WHATWG rules: lines end in LF, CRLF or CR (a CRLF
split between two chunks is one line end), ``data:`` lines of one event are
joined with LF, a blank line dispatches, comments and unknown fields are
ignored. It is fed bytes as they arrive, split anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from itertools import repeat
from typing import NamedTuple

DONE = b"data: [DONE]\n\n"
MAX_LINE = 1024 * 1024  # an upstream line longer than this is a broken stream


def data_frame(payload: bytes) -> bytes:
    """``data: <payload>`` as one frame; ``payload`` is one line of JSON."""
    return b"data: " + payload + b"\n\n"


def event_frame(event: str, payload: bytes) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


class ServerSentEvent(NamedTuple):
    """One decoded event (a tuple: made for every upstream chunk, so made cheaply)."""

    data: str
    event: str = "message"


# ``ServerSentEvent(data, event)`` without the named tuple's ``__new__`` (a Python
# frame): the same tuple of the same class, made for every upstream chunk.
_event: Callable[[tuple[str, str]], ServerSentEvent] = partial(tuple.__new__, ServerSentEvent)


_MESSAGE = repeat("message")


def _one_line_data(raw: bytes) -> list[str] | None:
    """The data of each event of ``raw`` if it is one-line ``data:`` events and nothing
    else, given without the first one's ``data: `` and the last one's blank line
    (``data: a\\n\\ndata: b``, LF line ends only); else ``None``.

    What ``SSEDecoder``'s line by line reading makes of them, with a few calls per read
    instead of several per event: the text is decoded as a whole, which is decoding each
    line (a line ends at an ASCII byte, where UTF-8 decoding starts afresh, an invalid
    sequence's replacement included); split at ``\\n\\ndata: ``, it is one-line ``data:``
    events when no piece holds a ``\\n``.
    """
    parts = raw.decode("utf-8", "replace").split("\n\ndata: ")
    if "\n" in "".join(parts):  # (a join and a search cost less than ``str.count``'s loop)
        return None  # a line that is not ``data:``, or an event of two lines
    return parts


class SSEDecodeError(ValueError):
    pass


class SSEDecoder:
    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buffer = b""
        self._skip_lf = False  # the last chunk ended in CR; a leading LF belongs to it
        self._event = ""
        self._data: list[str] = []
        self._max_line = max_line

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Every event completed by ``chunk`` (a list: this runs for every read of every stream)."""
        events: list[ServerSentEvent] = []
        if not chunk:  # must not forget a CR that ended the previous chunk
            return events
        if self._skip_lf and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._skip_lf = False
        buffer = self._buffer + chunk
        if b"\r" not in buffer:  # the common case: LF line ends only
            if buffer.startswith(b"data: ") and not (self._data or self._event):
                # The most common read: whole one-line ``data:`` events, split at once
                # (``_one_line_data``); what follows the last of them, line by line below.
                cut = buffer.rfind(b"\n\n") + 2
                if cut > 2:
                    data = _one_line_data(buffer[6 : cut - 2])
                    if data is not None:
                        events = list(map(_event, zip(data, _MESSAGE, strict=False)))
                        if cut == len(buffer):  # the read ends with its last event
                            self._buffer = b""
                            return events
                        buffer = buffer[cut:]
            *lines, self._buffer = buffer.split(b"\n")
            data = self._data
            for line in lines:
                # ``_line``'s two common cases inline (a call less for each line).
                if line.startswith(b"data: "):
                    data.append(line[6:].decode("utf-8", "replace"))
                    continue
                if not line and len(data) == 1:
                    events.append(_event((data[0], self._event or "message")))
                    self._event = ""
                    data.clear()  # its one line is in the event: the list serves the next
                    continue
                event = self._line(line)
                data = self._data
                if event is not None:
                    events.append(event)
            if len(self._buffer) > self._max_line:
                raise SSEDecodeError(f"an upstream SSE line exceeds {self._max_line} bytes")
            return events
        start = 0
        length = len(buffer)
        while start < length:
            lf = buffer.find(b"\n", start)
            cr = buffer.find(b"\r", start, lf if lf >= 0 else length)
            if cr >= 0:
                end, nxt = cr, cr + 1
                if nxt < length and buffer[nxt] == 0x0A:
                    nxt += 1
                elif nxt == length:
                    self._skip_lf = True
            elif lf >= 0:
                end, nxt = lf, lf + 1
            else:
                break
            event = self._line(buffer[start:end])
            if event is not None:
                events.append(event)
            start = nxt
        self._buffer = buffer[start:]
        if len(self._buffer) > self._max_line:
            raise SSEDecodeError(f"an upstream SSE line exceeds {self._max_line} bytes")
        return events

    def messages(self, chunk: bytes) -> list[str] | None:
        """The data of the events ``chunk`` completes, a string each, when they are all
        one-line ``data:`` events (of type ``message``), ``chunk`` ends with the last of
        them and nothing of an event came before it: most reads of a Chat Completions
        stream, without a ``ServerSentEvent`` made for each. Else ``None``, and nothing
        is read: ``feed`` the chunk instead.
        """
        if self._buffer or self._data or self._event or self._skip_lf:
            return None
        if not (chunk.startswith(b"data: ") and chunk.endswith(b"\n\n")) or b"\r" in chunk:
            return None
        return _one_line_data(chunk[6:-2])

    def close(self) -> list[ServerSentEvent]:
        """Flush at end of stream: a last event not followed by a blank line counts."""
        events: list[ServerSentEvent] = []
        if self._buffer:
            event = self._line(self._buffer)
            self._buffer = b""
            if event is not None:
                events.append(event)
        event = self._line(b"")
        if event is not None:
            events.append(event)
        return events

    def _line(self, raw: bytes) -> ServerSentEvent | None:
        if raw.startswith(b"data: "):  # by far the most common line
            self._data.append(raw[6:].decode("utf-8", "replace"))
            return None
        if not raw:
            data = self._data
            if not data:
                self._event = ""
                return None
            event = ServerSentEvent(
                data[0] if len(data) == 1 else "\n".join(data), self._event or "message"
            )
            self._event, self._data = "", []
            return event
        line = raw.decode("utf-8", "replace")
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None
