"""A2A tasks and contexts in Redis, per API key, kept ``retention_seconds``.

Under the creating key's hash tag (``schema``), so another key finds nothing:

- ``…:a2a:task:{id}``: the task as clients see it (A2A 1.0 JSON), and the agent
  it belongs to;
- ``…:a2a:task:{id}:events``: its stream responses in order (the first is the task
  as submitted), which ``SubscribeToTask`` replays and follows;
- ``…:a2a:task:{id}:cancel``: a cancel request its runner polls for;
- ``…:a2a:task:{id}:run``: the lease of the process running it (gone when it died);
- ``…:a2a:tasks:{agent}``: the key's task ids at an agent by last update, for
  ``ListTasks``;
- ``…:a2a:context:{id}``: a context's conversation, as Open Responses items, which
  a later message with that ``contextId`` continues over any backend.

Every write of content (a task, its events, a context) goes through ``_seal`` and
every read through ``_open``: the one place a storage policy (encryption at rest,
a route that stores nothing) applies to A2A state.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis import asyncio as aioredis

from gateway.store import schema
from gateway.store.store import guard

Json = dict[str, Any]
CANCEL_FLAG_MS = 300_000  # a cancel request is dropped after this (ended runs delete it)
LEASE_MS = 10_000  # a run whose process stops renewing it is taken as dead after this


@dataclass(frozen=True, slots=True)
class StoredTask:
    agent: str
    task: Json  # the A2A Task object
    run_start: str = "0"  # its latest run's events are those after this entry


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One stored stream response: its stream entry id and its JSON."""

    entry: str
    data: Json


class TaskStore:
    def __init__(self, redis: aioredis.Redis, retention_seconds: int) -> None:
        self._redis = redis
        self._ttl = retention_seconds
        # Task id -> set at its next append here; held by its followers only (weakly
        # here), so that a task nobody follows any more leaves nothing behind.
        self._changed: weakref.WeakValueDictionary[str, asyncio.Event] = (
            weakref.WeakValueDictionary()
        )

    # The one place content enters and leaves Redis (see the module docstring).
    def _seal(self, value: object) -> bytes:
        return orjson.dumps(value)

    def _open(self, blob: str | bytes) -> Any:
        return orjson.loads(blob)

    async def save(
        self,
        key_id: str,
        stored: StoredTask,
        events: Sequence[Json] = (),
        *,
        running: bool | None = None,
    ) -> None:
        """Store the task, and add ``events`` to its stream, at once (one transaction: a
        reader sees the task ended only with its final event there); ``running`` takes
        (``True``) or gives up (``False``) the lease of the process that runs it."""
        task_id = stored.task["id"]
        index = schema.a2a_tasks(key_id, stored.agent)
        record = {"agent": stored.agent, "task": stored.task, "run_start": stored.run_start}
        async with guard(), self._redis.pipeline(transaction=True) as pipe:
            self._add(pipe, key_id, task_id, events)
            if running is not None:
                self._lease(pipe, key_id, task_id, running)
            pipe.set(schema.a2a_task(key_id, task_id), self._seal(record), ex=self._ttl)
            pipe.zadd(index, {task_id: time.time_ns() // 1_000_000})
            pipe.expire(index, self._ttl)
            await pipe.execute()
        self._wake(task_id)

    async def load(self, key_id: str, task_id: str) -> StoredTask | None:
        async with guard():
            blob = await self._redis.get(schema.a2a_task(key_id, task_id))
        if blob is None:
            return None
        data = self._open(cast(str, blob))
        return StoredTask(data["agent"], data["task"], data["run_start"])

    async def listed(self, key_id: str, agent: str) -> list[Json]:
        """The key's tasks at ``agent``, most recently updated first."""
        index = schema.a2a_tasks(key_id, agent)
        async with guard():
            ids = cast(list[str], await self._redis.zrevrange(index, 0, -1))
            if not ids:
                return []
            blobs = await self._redis.mget([schema.a2a_task(key_id, i) for i in ids])
            gone = [i for i, blob in zip(ids, blobs, strict=True) if blob is None]
            if gone:  # expired: forget them in the index too
                await self._redis.zrem(index, *gone)
        return [self._open(blob)["task"] for blob in blobs if blob is not None]

    async def append(self, key_id: str, task_id: str, events: Sequence[Json]) -> None:
        """Add stream responses to the task's stream, and wake its followers here."""
        async with guard(), self._redis.pipeline(transaction=False) as pipe:
            self._add(pipe, key_id, task_id, events)
            await pipe.execute()
        self._wake(task_id)

    def _add(self, pipe: Any, key_id: str, task_id: str, events: Sequence[Json]) -> None:
        name = schema.a2a_task_events(key_id, task_id)
        for event in events:
            pipe.xadd(name, {"e": self._seal(event)})
        pipe.expire(name, self._ttl)

    def _wake(self, task_id: str) -> None:
        changed = self._changed.pop(task_id, None)
        if changed is not None:
            changed.set()

    def _lease(self, pipe: Any, key_id: str, task_id: str, running: bool) -> None:
        name = schema.a2a_task_run(key_id, task_id)
        if running:
            pipe.set(name, "1", px=LEASE_MS)
        else:
            pipe.delete(name)

    async def renew(self, key_id: str, task_id: str) -> None:
        """Keep the lease of a run in progress (``LEASE_MS``)."""
        async with guard():
            await self._redis.set(schema.a2a_task_run(key_id, task_id), "1", px=LEASE_MS)

    async def running(self, key_id: str, task_id: str) -> bool:
        """Whether a live process runs the task (it renews its lease)."""
        async with guard():
            return bool(await self._redis.exists(schema.a2a_task_run(key_id, task_id)))

    async def last_entry(self, key_id: str, task_id: str) -> str:
        """The id of the task's latest stream response; "0" if it has none."""
        name = schema.a2a_task_events(key_id, task_id)
        async with guard():
            last = cast(list[Any], await self._redis.xrevrange(name, count=1))
        return str(last[0][0]) if last else "0"

    async def events_after(self, key_id: str, task_id: str, after: str) -> list[TaskEvent]:
        """The stream responses after entry ``after`` ("0" for all)."""
        name = schema.a2a_task_events(key_id, task_id)
        async with guard():
            entries = cast(
                list[tuple[str, dict[str, str]]], await self._redis.xrange(name, f"({after}", "+")
            )
        return [TaskEvent(entry, self._open(fields["e"])) for entry, fields in entries]

    def changed(self, task_id: str) -> asyncio.Event:
        """Set at the task's next append in this process; a follower takes it before it
        reads, then waits on it with a timeout (a runner in another process appends
        unseen: its followers poll)."""
        changed = self._changed.get(task_id)
        if changed is None:
            changed = self._changed[task_id] = asyncio.Event()
        return changed

    async def save_context(self, key_id: str, context_id: str, items: list[Json]) -> None:
        async with guard():
            await self._redis.set(
                schema.a2a_context(key_id, context_id), self._seal(items), ex=self._ttl
            )

    async def load_context(self, key_id: str, context_id: str) -> list[Json] | None:
        async with guard():
            blob = await self._redis.get(schema.a2a_context(key_id, context_id))
        return None if blob is None else cast(list[Json], self._open(cast(str, blob)))

    async def request_cancel(self, key_id: str, task_id: str) -> None:
        async with guard():
            await self._redis.set(schema.a2a_task_cancel(key_id, task_id), "1", px=CANCEL_FLAG_MS)

    async def cancel_requested(self, key_id: str, task_id: str) -> bool:
        async with guard():
            return bool(await self._redis.exists(schema.a2a_task_cancel(key_id, task_id)))

    async def forget_cancel(self, key_id: str, task_id: str) -> None:
        async with guard():
            await self._redis.delete(schema.a2a_task_cancel(key_id, task_id))
