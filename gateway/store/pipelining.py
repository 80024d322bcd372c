"""Commands of concurrent requests share one Redis round trip.

Each request admits and settles with a few commands of its own; under load
many requests queue theirs in the same turn of the event loop. ``Pipeliner``
sends everything queued as one pipeline on one pooled connection, one pipeline
at a time (so commands reach Redis in the order they were queued), and hands
each caller its own replies or its own error. A caller that gave up before its
commands were sent (cancelled) sends nothing.

Nothing waits for company: commands queued while the pipeliner is idle go on
the next turn of the loop, with whatever else was queued in this one. A
settlement (nobody waits on it, its answer has gone out) is no exception: held
back for the next request's admission, it would ride on that request's critical
path, and under load it shares a round trip anyway, since one is nearly always
under way (docs/performance.md, round ten).

It packs the commands with hiredis and keeps one connection of the pool for
itself (the pool closes it with the rest), read and written through a plain
asyncio ``Protocol`` (``gateway/store/resp.py``): on an open connection a round
trip is a write, and the replies handed out by the read that completes them, with
no task, no coroutine and no future of its own; making a connection (afresh) and a
retry take a task. Each round trip
is bounded by one deadline, the pool's socket timeout, kept by one timer that
round trips only move.

Connection failures, by whether Redis can have applied the commands:

- **Dead before anything was written** (Redis restarted, or closed the idle
  connection, while no request was running): found before sending (its
  protocol has seen the connection end, or bytes nobody asked for), and a
  fresh connection takes the commands. Nothing was sent on the dead one, so nothing can run twice.
- **Broken after the commands were written** (a ``ConnectionError`` while
  sending or reading): Redis may have applied any of them. Callers that said
  their commands are safe to run twice (``idempotent``) are sent once more on a
  fresh connection; the others get the error. A timeout is never sent again:
  the deadline is what bounds a request's wait for a Redis that does not answer.

The connection's own ``retry`` policy is not used: it cannot tell these apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from hiredis import pack_command
from redis import asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.store.resp import RespConnection

Command = tuple[str | int | float | bytes, ...] | bytes
"""One Redis command and its arguments, e.g. ``("ZREM", key, member)``; or one already
packed, as ``hiredis.pack_command`` packs it (made of ``resp.Run`` and ``resp.bulk``)."""


@dataclass(slots=True)
class _Queued:
    commands: Sequence[Command]
    future: asyncio.Future[list[Any]]
    idempotent: bool  # safe to send again if Redis may have run it already


class Pipeliner:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._pool: Any = redis.connection_pool  # untyped in redis-py
        self._queued: list[_Queued] = []
        self._flight: list[_Queued] = []  # the callers of the round trip written, unanswered
        self._busy = False  # a round trip is due or under way: commands queued now wait
        self._sender: asyncio.Task[None] | None = None  # making a connection, or retrying
        self._connection: RespConnection | None = None
        self._timeout: float | None = None
        # The running loop, kept: Python 3.11's ``asyncio.get_running_loop()`` makes a
        # ``getpid()`` system call each time (to tell a forked child), and a request
        # queues twice. While the kept loop runs it is the running one (one loop runs on
        # a thread at a time, and the pipeliner's connection is bound to one loop
        # anyway); once it has stopped (``asyncio.run`` of another test, say) the
        # running loop is asked for again.
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, commands: Sequence[Command], *, idempotent: bool = False) -> list[Any]:
        """The replies to ``commands``, in order; the first error reply among them is raised.

        ``idempotent``: running ``commands`` twice leaves Redis as running them once, so
        they are sent again if the connection broke after they were written.
        """
        return await self.submit(commands, idempotent=idempotent)

    def submit(
        self, commands: Sequence[Command], *, idempotent: bool = False
    ) -> asyncio.Future[list[Any]]:
        """``run`` without a coroutine: the future of its replies (or of its error), for
        a caller that handles them in a callback instead of waiting (a settlement)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._queued.append(_Queued(commands, future, idempotent))
        if not self._busy:
            self._busy = True
            # On the next turn of the loop: callers of this turn join its pipeline.
            loop.call_soon(self._next)
        return future

    def _next(self) -> None:
        """Send what is queued. On an open connection the commands are written at once
        and the replies handed out by ``_answered``, called from the read that completes
        them: no task, no coroutine. A connection to make (afresh), a retry, or a
        connection that reads its own way takes a task."""
        queued = [q for q in self._queued if not q.future.done()]
        self._queued = []
        if not queued:
            self._busy = False
            return
        connection = self._connection
        if connection is None or connection.protocol is None or not connection.clean:
            self._sender = asyncio.ensure_future(self._send_all(queued))
            return
        commands = [command for q in queued for command in q.commands]
        try:
            packed = _pack(commands)
        except Exception as exc:  # a command that cannot be packed: nothing was written
            for q in queued:
                q.future.set_exception(exc)
            self._next()
            return
        self._flight = queued
        connection.protocol.send(packed, len(commands), self._timeout, self._answered)

    def _answered(self, result: list[Any] | Exception) -> None:
        """The replies of the round trip in flight (or why it failed), from its
        protocol, handed out from inside the read that completed them."""
        queued, self._flight = self._flight, []
        if type(result) is list:
            self._deliver(queued, result)
            if not self._queued:
                self._busy = False
            else:  # on the next turn, after the callers woken now: what they queue joins
                # (the loop ``submit`` kept: this round trip's, running this callback)
                cast(asyncio.AbstractEventLoop, self._loop).call_soon(self._next)
        else:  # written: the rules for a failed round trip, in a task (a retry waits)
            failure = (cast(Exception, result), True)
            self._sender = asyncio.ensure_future(self._send_all(queued, failure))

    async def _send_all(
        self, queued: list[_Queued], failure: tuple[Exception, bool] | None = None
    ) -> None:
        try:
            await self._send(queued, failure)
        except BaseException:  # this task itself was cancelled
            self._sender, self._busy = None, False
            for q in self._queued:
                q.future.cancel()
            self._queued = []
            raise
        self._sender = None
        self._next()

    async def _send(
        self, queued: list[_Queued], failure: tuple[Exception, bool] | None = None
    ) -> None:
        replies, written = failure if failure is not None else await self._attempt(queued)
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
        self._deliver(queued, replies)

    @staticmethod
    def _deliver(queued: list[_Queued], replies: list[Any]) -> None:
        at = 0
        for q in queued:
            end = at + len(q.commands)
            replies_of_mine = replies[at:end]
            at = end
            if q.future.done():
                continue
            for reply in replies_of_mine:
                if isinstance(reply, ResponseError):
                    q.future.set_exception(reply)
                    break
            else:
                q.future.set_result(replies_of_mine)

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


def _pack(commands: list[Command]) -> bytes:
    """The commands of one round trip, as Redis reads them."""
    return b"".join(
        [command if type(command) is bytes else pack_command(command) for command in commands]  # type: ignore[arg-type]
    )


def _write(
    connection: RespConnection, commands: list[Command], seconds: float | None
) -> asyncio.Future[list[Any]]:
    """Send ``commands`` at once (a round trip of the task's path: after a connection
    was made, or again); the future of one reply each (an error reply in its place),
    failed with a ``TimeoutError`` if they are not all in within ``seconds``."""
    packed = _pack(commands)
    if connection.protocol is None:  # one that reads its own way (fakeredis's)
        return asyncio.ensure_future(
            _exchange_through_redis_py(connection.connection, packed, len(commands))
        )
    return connection.protocol.round_trip(packed, len(commands), seconds)


async def _exchange(
    connection: RespConnection, commands: list[Command], seconds: float | None
) -> list[Any]:
    """``_write``'s replies, awaited. The connection is closed on any failure half-way,
    so that replies left unread are never read as the answer to later commands."""
    try:
        return await _write(connection, commands, seconds)
    except BaseException:
        await connection.drop()
        raise


async def _exchange_through_redis_py(
    connection: AbstractConnection, packed: bytes, count: int
) -> list[Any]:
    await connection.send_packed_command(packed)
    replies = [await _reply(connection) for _ in range(count)]
    for reply in replies:  # LOADING, max clients: the connection's fault, not a command's
        if isinstance(reply, RedisConnectionError):
            raise reply
    return replies


async def _reply(connection: AbstractConnection) -> Any:
    try:
        return await connection.read_response()
    except ResponseError as error:
        return error
