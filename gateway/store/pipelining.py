"""Commands of concurrent requests share one Redis round trip.

Each request admits and settles with a few commands of its own; under load
many requests queue theirs in the same turn of the event loop. ``Pipeliner``
sends everything queued as one pipeline on one pooled connection, one pipeline
at a time (so commands reach Redis in the order they were queued), and hands
each caller its own replies or its own error. A caller that gave up before its
commands were sent (cancelled) sends nothing.

Commands that nobody waits on (a settlement, after its answer went out) may be
``deferred``: they wait up to ``DEFER_SECONDS`` for other commands to share a
round trip with, so under light load a request's settlement rides with the
next request's admission instead of costing a round trip of its own.

It packs the commands with hiredis and reads the replies on the connection
directly: redis-py's ``Pipeline`` costs more than the round trip itself. It keeps
one connection of the pool for itself (the pool closes it with the rest), and
bounds each round trip by one deadline, the pool's socket timeout, rather than
a timer per read and per write.

Connection failures, by whether Redis can have applied the commands:

- **Dead before anything was written** (Redis restarted, or closed the idle
  connection, while no request was running): found before sending, as the
  pool checks a connection it hands out, and a fresh connection takes the
  commands. Nothing was sent on the dead one, so nothing can run twice.
- **Broken after the commands were written** (a ``ConnectionError`` while
  sending or reading): Redis may have applied any of them. Callers that said
  their commands are safe to run twice (``idempotent``) are sent once more on a
  fresh connection; the others get the error. A timeout is never sent again:
  the deadline is what bounds a request's wait for a Redis that does not answer.

The connection's own ``retry`` policy is not used: it cannot tell these apart.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hiredis import pack_command
from redis import asyncio as aioredis
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.watchdog import Watchdog

Command = tuple[str | int | float, ...]
"""One Redis command and its arguments, e.g. ``("ZREM", key, member)``."""

DEFER_SECONDS = 0.002


@dataclass(slots=True)
class _Queued:
    commands: Sequence[Command]
    future: asyncio.Future[list[Any]]
    idempotent: bool  # safe to send again if Redis may have run it already


class Pipeliner:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._pool: Any = redis.connection_pool  # untyped in redis-py
        self._queued: list[_Queued] = []
        self._sender: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._connection: AbstractConnection | None = None
        self._timeout: float | None = None

    async def run(
        self, commands: Sequence[Command], *, defer: bool = False, idempotent: bool = False
    ) -> list[Any]:
        """The replies to ``commands``, in order; the first error reply among them is raised.

        ``defer``: sent with the next commands that are not, or after ``DEFER_SECONDS``.
        ``idempotent``: running ``commands`` twice leaves Redis as running them once, so
        they are sent again if the connection broke after they were written.
        """
        return await self.submit(commands, defer=defer, idempotent=idempotent)

    def submit(
        self, commands: Sequence[Command], *, defer: bool = False, idempotent: bool = False
    ) -> asyncio.Future[list[Any]]:
        """``run`` without a coroutine: the future of its replies (or of its error), for
        a caller that handles them in a callback instead of waiting (a settlement)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._queued.append(_Queued(commands, future, idempotent))
        if self._sender is None:
            if not defer:
                self._start()
            elif self._timer is None:
                self._timer = loop.call_later(DEFER_SECONDS, self._start)
        return future

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sender is None:
            # Starts on the next turn of the loop: callers of this turn join its pipeline.
            self._sender = asyncio.ensure_future(self._send_all())

    async def _send_all(self) -> None:
        try:
            while self._queued:
                queued, self._queued = self._queued, []
                await self._send([q for q in queued if not q.future.done()])
        finally:
            self._sender = None
            for q in self._queued:  # only if this task itself was cancelled
                q.future.cancel()
            self._queued = []

    async def _send(self, queued: list[_Queued]) -> None:
        if not queued:
            return
        replies, written = await self._attempt(queued)
        if written and isinstance(replies, RedisConnectionError):
            # Written, perhaps in part, when the connection broke: Redis may have run any
            # of it. Only what is safe to run twice goes again, before anything queued
            # since (a release queued by a caller that left must follow its admission).
            again = []
            for q in queued:
                if q.idempotent and not q.future.done():
                    again.append(q)
                elif not q.future.done():
                    q.future.set_exception(replies)
            queued = again
            replies, _ = await self._attempt(queued) if queued else ([], True)
        if isinstance(replies, Exception):  # the round trip failed: every caller in it fails
            for q in queued:
                if not q.future.done():
                    q.future.set_exception(replies)
            return
        at = 0
        for q in queued:
            replies_of_mine = replies[at : at + len(q.commands)]
            at += len(q.commands)
            if q.future.done():
                continue
            error = next((r for r in replies_of_mine if isinstance(r, ResponseError)), None)
            if error is None:
                q.future.set_result(replies_of_mine)
            else:
                q.future.set_exception(error)

    async def _attempt(self, queued: list[_Queued]) -> tuple[list[Any] | Exception, bool]:
        """The replies of one round trip, or why it failed; and whether the commands
        may have been written (False if no connection could be had: Redis is away)."""
        try:
            connection = await self._ready()
        except Exception as exc:
            return exc, False
        except BaseException:
            self._cancel(queued)
            raise
        commands = [command for q in queued for command in q.commands]
        try:
            return await _exchange(connection, commands, self._timeout), True
        except Exception as exc:
            return exc, True
        except BaseException:
            self._cancel(queued)
            raise

    @staticmethod
    def _cancel(queued: list[_Queued]) -> None:
        for q in queued:
            q.future.cancel()

    async def _ready(self) -> AbstractConnection:
        """The pipeliner's connection, connected, with nothing left unread on it."""
        connection = self._connection
        if connection is None:
            connection = await self._pool.get_connection()
            # The round trip's deadline replaces the connection's own timers.
            self._timeout, connection.socket_timeout = connection.socket_timeout, None
            self._connection = connection
        elif not await _clean(connection):
            # What the pool checks of a connection it hands out: one Redis closed while
            # it lay idle (a restart, Redis's idle timeout) is made afresh, before
            # anything is written on it. Within the deadline: the connection has no
            # timers of its own, and a frozen Redis still accepts connections.
            try:
                async with asyncio.timeout(self._timeout):
                    await self._pool.ensure_connection(connection)
            except TimeoutError:
                raise RedisTimeoutError(
                    f"no connection to Redis within {self._timeout} s"
                ) from None
        return connection


async def _clean(connection: AbstractConnection) -> bool:
    """Whether ``connection`` is open with nothing unread on it: the pool's own check
    (``can_read`` looks at buffers the event loop already filled, without waiting), so
    the usual round trip arms no deadline for it; anything else goes through the pool's
    ``ensure_connection``, which reconnects."""
    if not connection.is_connected:
        return False
    try:
        return not await connection.can_read()
    except (RedisConnectionError, OSError):  # closed by Redis (EOF or reset)
        return False


async def _exchange(
    connection: AbstractConnection, commands: list[Command], seconds: float | None
) -> list[Any]:
    """Send ``commands`` at once, then read one reply each (an error reply in its place).

    redis-py closes the connection if sending or reading fails or is cancelled
    half-way, so replies left unread are never read as the answer to later commands:
    the next round trip opens the connection afresh.

    The deadline is the connection's ``Watchdog`` (one timer that a round trip only
    moves), not an ``asyncio.timeout`` (a timer armed and cancelled per round trip:
    about a fifth of a round trip's instructions). On a connection redis-py reads
    the usual way, the commands are written straight to its stream writer, without
    ``send_packed_command``'s coroutines (``_ready`` has checked the connection).
    """
    packed = b"".join([pack_command(command) for command in commands])  # type: ignore[arg-type]
    dog = _watchdog(connection)
    if seconds is not None:
        dog.wait(asyncio.get_running_loop().time() + seconds)
    try:
        writer = _writer(connection)
        if writer is None:
            await connection.send_packed_command(packed)  # a PING first when one is due
        else:
            try:
                writer.write(packed)
                if writer.transport.get_write_buffer_size():
                    await writer.drain()
            except OSError as exc:
                await connection.disconnect(nowait=True)
                raise RedisConnectionError(f"Error while writing to Redis: {exc.args}") from exc
            except BaseException:
                await connection.disconnect(nowait=True)
                raise
        return await _replies(connection, len(commands))
    except asyncio.CancelledError:
        if not dog.timed_out():
            raise
        dog.close()  # spent: the next round trip (on a fresh connection) gets its own
        _WATCHDOGS.pop(connection, None)
        raise RedisTimeoutError(f"no answer from Redis within {seconds} s") from None
    finally:
        dog.deadline = None


_WATCHDOGS: weakref.WeakKeyDictionary[AbstractConnection, Watchdog] = weakref.WeakKeyDictionary()


def _watchdog(connection: AbstractConnection) -> Watchdog:
    """The deadline keeper of ``connection``'s round trips (made in the running loop)."""
    dog = _WATCHDOGS.get(connection)
    if dog is None:
        dog = _WATCHDOGS[connection] = Watchdog()
    return dog


def _writer(connection: AbstractConnection) -> asyncio.StreamWriter | None:
    """The stream writer to write ``connection``'s commands to, or None when its own
    ``send_packed_command`` must (a health check due, a connection that writes its own
    way, such as fakeredis's)."""
    if (
        connection.health_check_interval
        and asyncio.get_running_loop().time() > connection.next_health_check
    ) or type(connection).send_packed_command is not AbstractConnection.send_packed_command:
        return None
    writer = getattr(connection, "_writer", None)
    return writer if type(writer) is asyncio.StreamWriter else None


async def _replies(connection: AbstractConnection, count: int) -> list[Any]:
    """``count`` replies, an error reply in its place.

    With hiredis (what the store connects with), read straight off its reader:
    redis-py's ``read_response`` costs more per reply than parsing it (a coroutine,
    its timeout logic, an error message made in advance). What it does
    besides is done here too: a failure or a cancellation half-way closes the
    connection, so that replies left unread are never read as the answer to later
    commands, and an ``OSError`` is raised as redis-py's ``ConnectionError``.
    """
    if (
        not isinstance(connection._parser, _AsyncHiredisParser)
        or type(connection).read_response is not AbstractConnection.read_response
    ):  # another parser, or a connection that reads its own way (a test double's)
        return [await _reply(connection) for _ in range(count)]
    parser: Any = connection._parser  # redis-py's own, untyped
    replies: list[Any] = []
    try:
        if not parser._connected:
            raise RedisConnectionError("Connection closed by server.")
        reader, push = parser._reader, parser._hiredis_PushNotificationType
        while len(replies) < count:
            reply = reader.gets()
            if reply is NOT_ENOUGH_DATA:
                await parser.read_from_socket()
                continue
            if push is not None and isinstance(reply, push):  # RESP3: not a reply
                await parser.handle_push_response(reply)
                continue
            if isinstance(reply, RedisConnectionError):
                raise reply
            if isinstance(reply, list) and reply and isinstance(reply[0], RedisConnectionError):
                raise reply[0]
            replies.append(reply)
    except OSError as exc:
        await connection.disconnect(nowait=True)
        raise RedisConnectionError(f"Error while reading from Redis: {exc.args}") from exc
    except BaseException:
        await connection.disconnect(nowait=True)
        raise
    if connection.health_check_interval:
        connection.next_health_check = (
            asyncio.get_running_loop().time() + connection.health_check_interval
        )
    return replies


async def _reply(connection: AbstractConnection) -> Any:
    try:
        return await connection.read_response()
    except ResponseError as error:
        return error
