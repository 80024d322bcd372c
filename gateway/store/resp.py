"""The pipeliner's connection: replies read by a plain asyncio ``Protocol``.

redis-py reads a reply through asyncio's streams and a few coroutines per layer
(``StreamReader.read``, its parser, its connection): about 90k instructions a round
trip where a ``Protocol`` whose ``data_received`` feeds ``hiredis.Reader`` needs
about 10k. ``RespConnection`` opens and closes the connection through a connection of
the pool, so it has exactly the pool's settings (host and port, unix socket,
Sentinel's master, TLS, AUTH with user and password, SELECT, client name, connect
timeout) and its handshake, and the pool closes it at shutdown; once open, it takes
the transport over (``set_protocol``): commands are written to it, and replies are
parsed as they arrive, the round trip answered by the read that completes them.

A connection that writes and reads its own way (fakeredis's, the embedded store) is
used through redis-py's calls instead (``RespConnection.stream`` is then False).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hiredis
from hiredis import pack_command
from redis._parsers.base import BaseParser
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisTimeoutError

_NOT_ENOUGH_DATA = object()

Arg = str | int | float | bytes
"""A command's argument, as ``hiredis.pack_command`` takes it."""


def bulk(args: tuple[Arg, ...]) -> bytes:
    """``args`` as RESP bulk strings, byte for byte as ``hiredis.pack_command`` writes
    them in a command (a str in UTF-8, an int or a float as its ``repr``; the same
    errors for anything else), without the command's array header (``*<count>\\r\\n``):
    a run of a command's arguments, to be joined with others into the command.

    hiredis formats each argument's length with a libc ``sprintf`` (about 1.3k
    instructions an argument, and 2.5k a call): the arguments that many commands share
    are packed once (``Run``), and only the others each time."""
    packed: bytes = pack_command(args)  # type: ignore[arg-type]
    return packed[4:] if len(args) < 10 else packed[len(b"*%d\r\n" % len(args)) :]


def bulk_string(arg: str | bytes) -> bytes:
    """``bulk((arg,))``, made in Python: for one argument, half of ``pack_command``'s
    cost."""
    if isinstance(arg, str):
        data = arg.encode()  # strict UTF-8, as hiredis (a lone surrogate fails alike)
    elif isinstance(arg, bytes):
        data = arg
    else:  # not what the type says: hiredis's own conversion, or its error
        return bulk((arg,))
    return b"$%d\r\n%b\r\n" % (len(data), data)


@dataclass(frozen=True, slots=True)
class Run:
    """Arguments that many commands share (a script's SHA and keys for an account and a
    minute), packed once: ``args`` as they are, for a client that packs its own commands
    (Redis Cluster's), and ``resp`` as ``bulk`` packs them, after the command's array
    header if the run is the command's first (``Run.first``). A command is then the
    join of its runs' ``resp`` and of its other arguments' ``bulk``."""

    args: tuple[Arg, ...]
    resp: bytes

    @classmethod
    def of(cls, *args: Arg) -> Run:
        return cls(args, bulk(args))

    @classmethod
    def first(cls, count: int, *args: Arg) -> Run:
        """The first arguments of a command of ``count`` arguments in all."""
        return cls(args, b"*%d\r\n" % count + bulk(args))


def reader(*, encoding: str | None = None, errors: str = "strict") -> hiredis.Reader:
    """A RESP reader that gives redis-py's error classes for error replies (``NOSCRIPT``
    gives ``NoScriptError``; a reply's error takes its place) and strings decoded with
    ``encoding`` (bytes without)."""
    if encoding is None:
        return hiredis.Reader(
            protocolError=InvalidResponse,
            replyError=BaseParser.parse_error,
            notEnoughData=_NOT_ENOUGH_DATA,
        )
    return hiredis.Reader(
        protocolError=InvalidResponse,
        replyError=BaseParser.parse_error,
        notEnoughData=_NOT_ENOUGH_DATA,
        encoding=encoding,
        errors=errors,
    )


Answered = Callable[[list[Any] | Exception], None]
"""Called once with a round trip's replies (an error reply in its place), or with why
it failed."""


class RespProtocol(asyncio.Protocol):
    """Writes a round trip's commands and gathers its ``count`` replies.

    One round trip at a time. Bytes that come while none waits (nothing should) make
    the connection ``dirty``: it is not used again. The end of the connection fails
    the round trip waiting (``RedisConnectionError``), and is passed on to the
    protocol it replaced, so that redis-py's close of its connection completes."""

    def __init__(
        self,
        transport: asyncio.Transport,
        parser: hiredis.Reader,
        replaced: asyncio.BaseProtocol | None = None,
    ) -> None:
        self._transport = transport
        self._reader = parser
        self._replaced = replaced
        self._answered: Answered | None = None  # the round trip under way's
        self._replies: list[Any] = []
        self._count = 0
        self.closed = False  # the connection ended, or is ending
        self.dirty = False  # bytes came that no round trip asked for
        # The deadline of the round trip under way, kept by one timer that a round trip
        # only moves (arming and cancelling a timer each time costs more than a read).
        self._loop = asyncio.get_running_loop()
        self._deadline: float | None = None
        self._seconds: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due = math.inf

    @property
    def clean(self) -> bool:
        """Open, with nothing unread: commands written now get their own replies."""
        return (
            not self.closed
            and not self.dirty
            and self._answered is None
            and not self._transport.is_closing()  # closed by the pool, say (at shutdown)
        )

    def send(self, packed: bytes, count: int, seconds: float | None, answered: Answered) -> None:
        """Write ``packed`` (``count`` commands); ``answered`` gets their replies, or a
        ``TimeoutError`` (and the connection is closed) after ``seconds``, or the
        connection's end.

        ``answered`` runs inside the read that completes the replies (or inside the
        timer or the connection's end), not in a later turn of the loop: the pipeliner
        hands the replies out from there, a turn and a future sooner. It must not raise;
        it may start the next round trip."""
        if self.closed:
            answered(RedisConnectionError("Connection closed by server."))
            return
        self._answered, self._replies, self._count = answered, [], count
        if seconds is not None:
            self._deadline, self._seconds = self._loop.time() + seconds, seconds
            if self._deadline < self._due:
                self._arm(self._deadline)
        self._transport.write(packed)

    def round_trip(
        self, packed: bytes, count: int, seconds: float | None = None
    ) -> asyncio.Future[list[Any]]:
        """``send``, answered through a future: that of the replies, failed with a
        ``TimeoutError`` (and the connection closed) after ``seconds``."""
        waiter: asyncio.Future[list[Any]] = self._loop.create_future()

        def answered(result: list[Any] | Exception) -> None:
            if waiter.done():  # cancelled by its caller
                return
            if isinstance(result, Exception):
                waiter.set_exception(result)
            else:
                waiter.set_result(result)

        self.send(packed, count, seconds, answered)
        return waiter

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._due = self._loop.call_at(when, self._check), when

    def _check(self) -> None:
        self._timer, self._due = None, math.inf
        deadline = self._deadline
        if self._answered is None or deadline is None:  # none waiting: the next one arms it
            return
        if deadline > self._loop.time():  # round trips came and went meanwhile
            self._arm(deadline)
            return
        self._fail(RedisTimeoutError(f"no answer from Redis within {self._seconds} s"))
        self._transport.abort()

    def abort(self) -> None:
        """Close at once, dropping whatever is unread or unsent (a round trip given up)."""
        self._fail(RedisConnectionError("Connection closed by the client."))
        self._transport.abort()

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        answered = self._answered
        if answered is None:
            self.dirty = True
            return
        replies, reader = self._replies, self._reader
        try:
            while len(replies) < self._count:
                reply = reader.gets()
                if reply is _NOT_ENOUGH_DATA:
                    return
                replies.append(reply)
        except InvalidResponse as exc:  # not RESP: nothing more on it can be trusted
            self._fail(RedisConnectionError(f"Protocol error from Redis: {exc}"))
            self._transport.abort()
            return
        self._answered = self._deadline = None
        for reply in replies:  # LOADING, max clients: the connection's fault, not a command's
            if isinstance(reply, RedisConnectionError):
                self.closed = True
                self._transport.abort()
                answered(reply)
                return
        answered(replies)

    def eof_received(self) -> bool | None:
        self.closed = True
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            self._fail(RedisConnectionError("Connection closed by server."))
        else:
            self._fail(RedisConnectionError(f"Error while reading from Redis: {exc}"))
        if self._replaced is not None:
            self._replaced.connection_lost(exc)
            self._replaced = None

    def _fail(self, error: Exception) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._due = None, math.inf
        answered, self._answered = self._answered, None
        if answered is not None:
            answered(error)


class RespConnection:
    """A connection of the pool, read and written through a ``RespProtocol``."""

    def __init__(self, connection: AbstractConnection) -> None:
        self.connection = connection
        self.protocol: RespProtocol | None = None
        kind = type(connection)
        # False: a connection that writes and reads its own way (fakeredis's, a test
        # double's), used through redis-py's calls only.
        self.stream = (
            kind.send_packed_command is AbstractConnection.send_packed_command
            and kind.read_response is AbstractConnection.read_response
        )
        if connection.is_connected:
            self._take()

    @property
    def clean(self) -> bool:
        """Open, with nothing unread: commands written now get their own replies."""
        if self.protocol is not None:
            return self.protocol.clean
        return not self.stream and bool(self.connection.is_connected)

    async def open(self) -> None:
        """Connected afresh through the pool's connection (its handshake: AUTH, SELECT,
        client name, TLS), then taken over. The caller bounds the wait."""
        await self.close()
        connection: Any = self.connection  # connect is untyped in redis-py
        await connection.connect()
        self._take()

    def _take(self) -> None:
        if not self.stream:
            return
        connection: Any = self.connection  # its streams are private to redis-py
        stream, writer = connection._reader, connection._writer
        if type(writer) is not asyncio.StreamWriter or not isinstance(stream, asyncio.StreamReader):
            self.stream = False  # connected some other way: redis-py's calls, then
            return
        encoder = connection.encoder
        parser = (
            reader(encoding=encoder.encoding, errors=encoder.encoding_errors)
            if encoder.decode_responses
            else reader()
        )
        transport: Any = writer.transport
        protocol = self.protocol = RespProtocol(transport, parser, transport.get_protocol())
        transport.set_protocol(protocol)
        left: Any = getattr(stream, "_buffer", None)  # read by the stream, not by its parser
        if left:
            protocol.data_received(bytes(left))
            left.clear()

    async def drop(self) -> None:
        """Given up half-way (replies unread): closed, the transport at once; the next
        ``open`` closes redis-py's side of it."""
        if self.protocol is not None:
            self.protocol.abort()
        else:
            await self.connection.disconnect(nowait=True)

    async def close(self) -> None:
        """Closed as redis-py closes its connection (as the pool does at shutdown)."""
        protocol, self.protocol = self.protocol, None
        if protocol is not None:
            protocol.abort()
        await self.connection.disconnect(nowait=True)
