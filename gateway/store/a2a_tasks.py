"""A2A tasks and contexts in Redis, per API key, kept as their agent's ``StoragePolicy`` says.

Under the creating key's hash tag (``schema``), so another key finds nothing and
every script runs on Redis Cluster:

- ``…:a2a:task:{id}``: the task as clients see it (A2A 1.0 JSON), and the agent
  it belongs to;
- ``…:a2a:task:{id}:events``: its stream responses in order (the first is the task
  as submitted), which ``SubscribeToTask`` replays and follows; entry ids
  ``0-1``, ``0-2``... chosen by the writer, so that each is sealed to its entry;
- ``…:a2a:task:{id}:cancel``: a cancel request its runner polls for;
- ``…:a2a:task:{id}:run``: the lease of the process running it (gone when it died);
- ``…:a2a:tasks:{agent}``: the key's task ids at an agent by last update, for
  ``ListTasks``;
- ``…:a2a:context:{id}``: a context's conversation, as Open Responses items, which
  a later message with that ``contextId`` continues over any backend;
- ``…:a2a:index:tasks``, ``…:a2a:index:contexts`` (ids by expiry) and
  ``…:a2a:index:lists`` (the task lists): what erasing the key's conversations
  walks (``gateway.store.erasure``), written with each task and context.

Every write of content (a task, its events, a context) goes through ``_seal`` and
every read through ``_open``: the store's ``ContentCipher`` (AES-GCM bound to the
value's Redis key, and an event's to its stream entry too), as for stored
responses; a value stored before encryption was on is read as it is. Each write is
kept ``retention_ms``, the retention of the task's agent (``Gateway.storage``); an
agent whose storage is off keeps nothing here (``gateway.conversation.a2a_tasks``
serves it live).
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

from gateway.errors import NotFound, ServiceUnavailable
from gateway.store import schema
from gateway.store.cipher import PLAINTEXT, ContentCipher
from gateway.store.store import guard, load_script

Json = dict[str, Any]
CANCEL_FLAG_MS = 300_000  # a cancel request is dropped after this (ended runs delete it)
LEASE_MS = 10_000  # a run whose process stops renewing it is taken as dead after this
# Writes of one task pushed back by another writer's events (a cancel racing a run)
# before giving up: each retry goes after the other's write, so a second is rare.
WRITE_ATTEMPTS = 8
NO_ENTRY = "0"  # the last entry id of a stream that has none


class TaskGone(NotFound):
    """A run's write found its lease gone: the task was erased (a purge), or the run
    taken for dead. Nothing was written; the run stops."""


@dataclass(frozen=True, slots=True)
class StoredTask:
    agent: str
    task: Json  # the A2A Task object
    run_start: str = NO_ENTRY  # its latest run's events are those after this entry


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One stored stream response: its stream entry id and its JSON."""

    entry: str
    data: Json


def next_entry(entry: str) -> str:
    """The entry id after ``entry`` ("0" for none): ``0-1``, ``0-2``...; after an id
    Redis chose (a stream written before ids were the writer's), ``<ms>-<seq + 1>``."""
    ms, _, seq = entry.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


class TaskStore:
    def __init__(self, redis: aioredis.Redis, cipher: ContentCipher = PLAINTEXT) -> None:
        self._redis = redis
        self.cipher = cipher
        self._write = load_script(redis, "a2a_save")
        self._save_indexed = load_script(redis, "save_indexed")
        # Task id -> set at its next append here; held by its followers only (weakly
        # here), so that a task nobody follows any more leaves nothing behind.
        self._changed: weakref.WeakValueDictionary[str, asyncio.Event] = (
            weakref.WeakValueDictionary()
        )

    # The one place content enters and leaves Redis (see the module docstring).
    def _seal(self, value: object, binding: str) -> str:
        return self.cipher.seal(orjson.dumps(value), binding)

    def _open(self, blob: str, binding: str) -> Any:
        return orjson.loads(self.cipher.open(blob, binding))

    async def save(
        self,
        key_id: str,
        stored: StoredTask,
        events: Sequence[Json] = (),
        *,
        retention_ms: int,
        after: str = NO_ENTRY,
        running: bool | None = None,
    ) -> str:
        """Store the task, and add ``events`` to its stream, at once (one script: a
        reader sees the task ended only with its final event there); ``running`` takes
        (``True``) or gives up (``False``) the lease of the process that runs it, which
        must still hold it (else ``TaskGone``); ``None``: written by no run.
        ``after``: the stream's last entry as the writer knows it. Returns the stream's
        last entry once written."""
        task_id = stored.task["id"]
        record = {"agent": stored.agent, "task": stored.task, "run_start": stored.run_start}
        value = self._seal(record, schema.a2a_task(key_id, task_id))
        lease = "" if running is None else "take" if running else "end"
        return await self._put(
            key_id, stored.agent, task_id, value, events, retention_ms, after, lease
        )

    async def append(
        self,
        key_id: str,
        agent: str,
        task_id: str,
        events: Sequence[Json],
        *,
        retention_ms: int,
        after: str,
    ) -> str:
        """Add a run's stream responses to the task's stream (``TaskGone`` if the run's
        lease is), and wake its followers here; the stream's last entry once written."""
        return await self._put(key_id, agent, task_id, "", events, retention_ms, after, "keep")

    async def _put(
        self,
        key_id: str,
        agent: str,
        task_id: str,
        value: str,
        events: Sequence[Json],
        retention_ms: int,
        after: str,
        lease: str,
    ) -> str:
        keys = [
            schema.a2a_task(key_id, task_id),
            schema.a2a_task_events(key_id, task_id),
            schema.a2a_task_run(key_id, task_id),
            schema.a2a_tasks(key_id, agent),
            schema.a2a_task_index(key_id),
            schema.a2a_task_lists(key_id),
        ]
        head = [value, retention_ms, time.time_ns() // 1_000_000, task_id, lease, LEASE_MS]
        for _ in range(WRITE_ATTEMPTS):
            args: list[Any] = [*head, after]
            entry = after
            for event in events:
                entry = next_entry(entry)
                args += [entry, self._seal(event, f"{keys[1]}/{entry}")]
            async with guard():
                written, last = cast(list[Any], await self._write(keys=keys, args=args))
            if written == 1:
                self._wake(task_id)
                return str(last)
            if written == -1:
                raise TaskGone(f"Task '{task_id}' not found.")
            after = str(last)  # another writer's events came first: ours go after them
        raise ServiceUnavailable(
            f"Task '{task_id}' is being written by another request; retry.",
            headers={"Retry-After": "1"},
        )

    async def load(self, key_id: str, task_id: str) -> StoredTask | None:
        name = schema.a2a_task(key_id, task_id)
        async with guard():
            blob = cast(str | None, await self._redis.get(name))
        if blob is None:
            return None
        data = self._open(blob, name)
        return StoredTask(data["agent"], data["task"], data["run_start"])

    async def listed(self, key_id: str, agent: str) -> list[Json]:
        """The key's tasks at ``agent``, most recently updated first."""
        index = schema.a2a_tasks(key_id, agent)
        async with guard():
            ids = cast(list[str], await self._redis.zrevrange(index, 0, -1))
            if not ids:
                return []
            names = [schema.a2a_task(key_id, i) for i in ids]
            blobs = cast(list[str | None], await self._redis.mget(names))
            gone = [i for i, blob in zip(ids, blobs, strict=True) if blob is None]
            if gone:  # expired: forget them in the index too
                await self._redis.zrem(index, *gone)
        return [
            self._open(blob, name)["task"]
            for name, blob in zip(names, blobs, strict=True)
            if blob is not None
        ]

    def _wake(self, task_id: str) -> None:
        changed = self._changed.pop(task_id, None)
        if changed is not None:
            changed.set()

    async def renew(self, key_id: str, task_id: str) -> None:
        """Keep the lease of a run in progress (``LEASE_MS``), unless it is gone (a
        purge): then the run's next write finds it so, and the run stops."""
        async with guard():
            name = schema.a2a_task_run(key_id, task_id)
            await self._redis.set(name, "1", px=LEASE_MS, xx=True)

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
        return [TaskEvent(e, self._open(fields["e"], f"{name}/{e}")) for e, fields in entries]

    def changed(self, task_id: str) -> asyncio.Event:
        """Set at the task's next append in this process; a follower takes it before it
        reads, then waits on it with a timeout (a runner in another process appends
        unseen: its followers poll)."""
        changed = self._changed.get(task_id)
        if changed is None:
            changed = self._changed[task_id] = asyncio.Event()
        return changed

    async def save_context(
        self, key_id: str, context_id: str, items: list[Json], *, retention_ms: int
    ) -> None:
        """Store a context's conversation, listed in the key's index of contexts."""
        name = schema.a2a_context(key_id, context_id)
        keys = [name, schema.a2a_context_index(key_id)]
        now = time.time_ns() // 1_000_000
        args = [self._seal(items, name), retention_ms, now, context_id, 0]
        async with guard():
            await self._save_indexed(keys=keys, args=args)

    async def load_context(self, key_id: str, context_id: str) -> list[Json] | None:
        name = schema.a2a_context(key_id, context_id)
        async with guard():
            blob = cast(str | None, await self._redis.get(name))
        return None if blob is None else cast(list[Json], self._open(blob, name))

    async def request_cancel(self, key_id: str, task_id: str) -> None:
        async with guard():
            await self._redis.set(schema.a2a_task_cancel(key_id, task_id), "1", px=CANCEL_FLAG_MS)

    async def cancel_requested(self, key_id: str, task_id: str) -> bool:
        async with guard():
            return bool(await self._redis.exists(schema.a2a_task_cancel(key_id, task_id)))

    async def forget_cancel(self, key_id: str, task_id: str) -> None:
        async with guard():
            await self._redis.delete(schema.a2a_task_cancel(key_id, task_id))
