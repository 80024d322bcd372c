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
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.store.resp import RespConnection
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
        self._connection: RespConnection | None = None
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

    async def _ready(self) -> RespConnection:
        """The pipeliner's connection, connected, with nothing left unread on it."""
        connection = self._connection
        if connection is None:
            pooled = await self._pool.get_connection()
            # The round trip's deadline replaces the connection's own timers.
            self._timeout, pooled.socket_timeout = pooled.socket_timeout, None
            connection = self._connection = RespConnection(pooled)
        if not connection.clean:
            # What the pool checks of a connection it hands out: one Redis closed while
            # it lay idle (a restart, Redis's idle timeout) is made afresh, before
            # anything is written on it. Within the deadline: the connection has no
            # timers of its own, and a frozen Redis still accepts connections.
            try:
                async with asyncio.timeout(self._timeout):
                    await connection.open()
            except TimeoutError:
                raise RedisTimeoutError(
                    f"no connection to Redis within {self._timeout} s"
                ) from None
        return connection


async def _exchange(
    connection: RespConnection, commands: list[Command], seconds: float | None
) -> list[Any]:
    """Send ``commands`` at once, then read one reply each (an error reply in its place).

    A failure or a cancellation half-way closes the connection, so replies left unread
    are never read as the answer to later commands: the next round trip opens it afresh.

    The deadline is the connection's ``Watchdog`` (one timer that a round trip only
    moves), not an ``asyncio.timeout`` (a timer armed and cancelled per round trip).
    """
    packed = b"".join([pack_command(command) for command in commands])  # type: ignore[arg-type]
    dog = _watchdog(connection)
    if seconds is not None:
        dog.wait(asyncio.get_running_loop().time() + seconds)
    try:
        if connection.protocol is None:  # one that reads its own way (fakeredis's)
            replies = await _exchange_through_redis_py(connection.connection, packed, len(commands))
        else:
            replies = await connection.protocol.round_trip(packed, len(commands))
        for reply in replies:  # LOADING, max clients, a lost AUTH: the connection's fault
            if isinstance(reply, RedisConnectionError):
                raise reply
        return replies
    except asyncio.CancelledError:
        await connection.drop()
        if not dog.timed_out():
            raise
        dog.close()  # spent: the next round trip (on a fresh connection) gets its own
        _WATCHDOGS.pop(connection, None)
        raise RedisTimeoutError(f"no answer from Redis within {seconds} s") from None
    except BaseException:
        await connection.drop()
        raise
    finally:
        dog.deadline = None


_WATCHDOGS: weakref.WeakKeyDictionary[RespConnection, Watchdog] = weakref.WeakKeyDictionary()


def _watchdog(connection: RespConnection) -> Watchdog:
    """The deadline keeper of ``connection``'s round trips (made in the running loop)."""
    dog = _WATCHDOGS.get(connection)
    if dog is None:
        dog = _WATCHDOGS[connection] = Watchdog()
    return dog


async def _exchange_through_redis_py(
    connection: AbstractConnection, packed: bytes, count: int
) -> list[Any]:
    await connection.send_packed_command(packed)
    return [await _reply(connection) for _ in range(count)]


async def _reply(connection: AbstractConnection) -> Any:
    try:
        return await connection.read_response()
    except ResponseError as error:
        return error
