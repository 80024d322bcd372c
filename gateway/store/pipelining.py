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
a timer per read and per write. Like redis-py's pipelines, a connection failure
is retried by the connection's own retry policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial
from typing import Any

from hiredis import pack_command
from redis import asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Command = tuple[str | int | float, ...]
"""One Redis command and its arguments, e.g. ``("ZREM", key, member)``."""

_Queued = tuple[Sequence[Command], "asyncio.Future[list[Any]]"]

DEFER_SECONDS = 0.002


class Pipeliner:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._pool: Any = redis.connection_pool  # untyped in redis-py
        self._queued: list[_Queued] = []
        self._sender: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._connection: AbstractConnection | None = None
        self._timeout: float | None = None

    async def run(self, commands: Sequence[Command], *, defer: bool = False) -> list[Any]:
        """The replies to ``commands``, in order; the first error reply among them is raised.

        ``defer``: sent with the next commands that are not, or after ``DEFER_SECONDS``.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._queued.append((commands, future))
        if self._sender is None:
            if not defer:
                self._start()
            elif self._timer is None:
                self._timer = loop.call_later(DEFER_SECONDS, self._start)
        return await future

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
                await self._send([q for q in queued if not q[1].done()])
        finally:
            self._sender = None
            for _, future in self._queued:  # only if this task itself was cancelled
                future.cancel()
            self._queued = []

    async def _send(self, queued: list[_Queued]) -> None:
        if not queued:
            return
        commands = [command for mine, _ in queued for command in mine]
        try:
            replies = await self._round_trip(commands)
        except Exception as exc:  # the round trip failed: every caller in it fails
            for _, future in queued:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:
            for _, future in queued:
                future.cancel()
            raise
        at = 0
        for mine, future in queued:
            replies_of_mine = replies[at : at + len(mine)]
            at += len(mine)
            if future.done():
                continue
            error = next((r for r in replies_of_mine if isinstance(r, ResponseError)), None)
            if error is None:
                future.set_result(replies_of_mine)
            else:
                future.set_exception(error)

    async def _round_trip(self, commands: list[Command]) -> list[Any]:
        connection = self._connection
        if connection is None:
            connection = await self._pool.get_connection()
            # The round trip's deadline replaces the connection's own timers.
            self._timeout, connection.socket_timeout = connection.socket_timeout, None
            self._connection = connection
        replies: list[Any] = await connection.retry.call_with_retry(
            partial(_exchange, connection, commands, self._timeout),
            lambda _error: connection.disconnect(),
        )
        return replies


async def _exchange(
    connection: AbstractConnection, commands: list[Command], seconds: float | None
) -> list[Any]:
    """Send ``commands`` at once, then read one reply each (an error reply in its place).

    redis-py closes the connection if sending or reading fails or is cancelled
    half-way, so replies left unread are never read as the answer to later commands:
    the next round trip opens the connection afresh.
    """
    packed = b"".join([pack_command(command) for command in commands])  # type: ignore[arg-type]
    replies: list[Any] = []
    try:
        async with asyncio.timeout(seconds):
            await connection.send_packed_command(packed)  # a PING first when one is due
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as error:
                    replies.append(error)
    except TimeoutError:
        raise RedisTimeoutError(f"no answer from Redis within {seconds} s") from None
    return replies
