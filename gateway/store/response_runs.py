"""Background responses in Redis: their event streams, for resuming, and their runs, for cancelling.

Everything is under the creating key's hash tag (``schema``), so another key finds
nothing, and every script runs on Redis Cluster:

- ``…:response:{id}:events``: a stream with one entry per Open Responses event,
  entry id ``0-<sequence_number + 1>``, fields ``t`` (the event type) and ``e``
  (its JSON, sealed by the store's ``ContentCipher``, bound to the stream and entry).
  Only a response created with ``background`` and ``stream`` has one.
  Trimmed to the latest ``responses.events_max`` events and
  ``responses.events_max_bytes`` bytes (the newest event always stays), it
  expires with the response, after the retention of its agent's ``StoragePolicy``.
- ``…:response:{id}:run``: the token of the process running the response, with a
  lease that process renews (``LEASE_SECONDS``); deleted when the run ends, and
  gone by itself when its process dies.
- ``…:response:{id}:cancel``: a cancel request (kept 5 minutes); the runner sees
  it at its next write or heartbeat (``HEARTBEAT_SECONDS``).

Every write of a run goes through one script (``lua/response_write.lua``) that
checks the run's token first: a process whose lease was lost writes nothing.

Live followers read with ``XREAD BLOCK``, which holds a connection for as long
as it waits: they use a client of their own (at most ``responses.max_followers``
connections per process), never the store's.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, cast

from redis import asyncio as aioredis

from gateway.errors import ServiceUnavailable
from gateway.settings import ResponsesSettings
from gateway.store import schema
from gateway.store.cipher import PLAINTEXT, ContentCipher
from gateway.store.responses import StoredResponse, encode, now_ms
from gateway.store.settings import EMBEDDED, RedisSettings
from gateway.store.store import Store, connect, guard, load_script

LEASE_SECONDS = 10.0  # a run whose process stops renewing is taken as dead after this
HEARTBEAT_SECONDS = 0.5  # a run with nothing to write checks for a cancel this often
BLOCK_SECONDS = 5.0  # a follower waiting for events checks the run is alive this often
CANCEL_FLAG_MS = 300_000  # a cancel request is dropped after this (ended runs delete it)
READ_COUNT = 256  # events read in one go by a follower (what it holds in memory)

Mode = Literal["begin", "step", "final"]
State = Literal["ok", "cancel", "done", "lost", "gone"]


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One stored event: its sequence number, type, and JSON as sent to clients."""

    seq: int
    type: str
    data: str


def new_token() -> str:
    return secrets.token_hex(8)


def entry_id(seq: int) -> str:
    return f"0-{seq + 1}"


def _seq(entry: str) -> int:
    return int(entry.partition("-")[2]) - 1


class EventLog:
    """The events one run keeps in its stream, by size, to trim by count and bytes.

    Holds one integer per event kept, so at most ``max_events`` of them.
    """

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._sizes: deque[int] = deque()
        self._bytes = 0
        self.first = 0  # the sequence number of the oldest event kept

    def add(self, size: int) -> None:
        self._sizes.append(size)
        self._bytes += size
        while len(self._sizes) > 1 and (
            len(self._sizes) > self._max_events or self._bytes > self._max_bytes
        ):
            self._bytes -= self._sizes.popleft()
            self.first += 1

    def min_id(self) -> str:
        """The stream trimmed below this entry id keeps exactly these events."""
        return entry_id(self.first) if self.first else ""


class ResponseRuns:
    def __init__(
        self,
        redis: aioredis.Redis,
        redis_settings: RedisSettings,
        settings: ResponsesSettings,
        cipher: ContentCipher = PLAINTEXT,
    ) -> None:
        self._redis = redis
        self._redis_settings = redis_settings
        self.settings = settings
        self.cipher = cipher
        self._lease_ms = int(LEASE_SECONDS * 1000)
        self._write = load_script(redis, "response_write")
        self._followers: Store | None = None  # made at the first follow
        self._following = 0

    def log(self) -> EventLog:
        return EventLog(self.settings.events_max, self.settings.events_max_bytes)

    async def write(
        self,
        key_id: str,
        response_id: str,
        token: str,
        mode: Mode,
        retention_ms: int,
        events: Sequence[tuple[int, str, bytes]] = (),
        response: StoredResponse | None = None,
        min_id: str = "",
    ) -> State:
        """Append ``events`` (sequence number, type, JSON), store ``response``, renew the
        lease (``begin`` takes it, ``final`` ends it), all kept ``retention_ms``; the
        run's state (see the script). Content is sealed here, bound to where it goes."""
        keys = self._keys(key_id, response_id)
        value = "" if response is None else self.cipher.seal(encode(response), keys[0])
        args: list[Any] = [token, mode, retention_ms, self._lease_ms, min_id, value]
        args += [now_ms(), response_id]
        seal = self.cipher.encrypts  # else the JSON goes as it is, as bytes
        for seq, kind, data in events:
            entry = entry_id(seq)
            args += [entry, kind, self.cipher.seal(data, f"{keys[1]}/{entry}") if seal else data]
        async with guard():
            return cast(State, await self._write(keys=keys, args=args))

    def _keys(self, key_id: str, response_id: str) -> list[str]:
        return [
            schema.stored_response(key_id, response_id),
            schema.response_events(key_id, response_id),
            schema.response_run(key_id, response_id),
            schema.response_cancel(key_id, response_id),
            schema.stored_responses(key_id),
        ]

    async def request_cancel(self, key_id: str, response_id: str) -> bool:
        """Ask the run to stop; whether a process is running it (else no one will see it)."""
        async with guard():
            # The run sees it within a heartbeat, or is dead and the canceller ends it:
            # a flag left by a cancel that raced the run's end need not outlive that.
            name = schema.response_cancel(key_id, response_id)
            await self._redis.set(name, "1", px=CANCEL_FLAG_MS)
            return bool(await self._redis.exists(schema.response_run(key_id, response_id)))

    async def claim(self, key_id: str, response_id: str, token: str) -> bool:
        """Take over a run no process holds (its process died); whether this one got it."""
        name = schema.response_run(key_id, response_id)
        async with guard():
            return bool(await self._redis.set(name, token, px=self._lease_ms, nx=True))

    async def running(self, key_id: str, response_id: str) -> bool:
        async with guard():
            return bool(await self._redis.exists(schema.response_run(key_id, response_id)))

    async def streamed(self, key_id: str, response_id: str) -> bool:
        """Whether the response keeps an event stream (created with background and stream)."""
        async with guard():
            return bool(await self._redis.exists(schema.response_events(key_id, response_id)))

    async def last_seq(self, key_id: str, response_id: str) -> int:
        """The sequence number of the stream's last event; -1 if it has none."""
        name = schema.response_events(key_id, response_id)
        async with guard():
            last = cast(list[Any], await self._redis.xrevrange(name, count=1))
        return _seq(last[0][0]) if last else -1

    async def delete(self, key_id: str, response_id: str) -> None:
        """Forget the stream and any cancel request (the run token stays: the runner
        finds the response gone at its next write and stops)."""
        async with guard():
            await self._redis.delete(
                schema.response_events(key_id, response_id),
                schema.response_cancel(key_id, response_id),
            )

    @asynccontextmanager
    async def following(self) -> AsyncIterator[None]:
        """A follower's slot; 503 when this process follows ``max_followers`` already."""
        if self._following >= self.settings.max_followers:
            raise ServiceUnavailable(
                "This gateway process follows as many response streams as it may "
                "(responses.max_followers); retry later.",
                headers={"Retry-After": "1"},
            )
        self._following += 1
        try:
            yield
        finally:
            self._following -= 1

    async def read(
        self, key_id: str, response_id: str, after: int, *, block: bool
    ) -> list[StreamEvent]:
        """The events after sequence number ``after`` (at most ``READ_COUNT``); with
        ``block``, waiting up to ``BLOCK_SECONDS`` for one to come."""
        name = schema.response_events(key_id, response_id)
        wait = int(BLOCK_SECONDS * 1000) if block else None
        async with guard():
            reply = await self._follower().xread({name: entry_id(after)}, READ_COUNT, wait)
        got = cast(list[Any], reply)
        if not got:
            return []
        [(_, entries)] = got  # one stream read: [[name, [(id, fields), ...]]]
        return [
            StreamEvent(_seq(entry), fields["t"], self._open(fields["e"], f"{name}/{entry}"))
            for entry, fields in entries
        ]

    def _open(self, value: str, binding: str) -> str:
        return self.cipher.open_text(value, binding)

    def _follower(self) -> aioredis.Redis:
        if self._followers is None:
            settings = self._redis_settings
            if settings.url == EMBEDDED:  # an in-process fake: only the store's sees its data
                return self._redis
            client = connect(
                dataclasses.replace(
                    settings,
                    max_connections=self.settings.max_followers,
                    socket_timeout=settings.socket_timeout + BLOCK_SECONDS,
                )
            )
            self._followers = Store(client)  # for its ``aclose``, which knows every kind
        return self._followers.redis

    async def aclose(self) -> None:
        if self._followers is not None:
            await self._followers.aclose()
            self._followers = None
