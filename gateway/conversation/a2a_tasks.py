"""A2A tasks over any backend: started from a message, run detached, followed, cancelled.

A message is ``prepare``d with the conversation of its ``contextId`` put before
it (kept by the gateway, ``gateway.store.a2a_tasks``, so that a context continues
over a backend that keeps no state); the door opens its call like any other
(route, admission, first answer), and ``start`` runs it in a tracked task
(``TaskRun``) that no client holds: it writes each stream response to the task's stream in Redis and
the task itself once it ends, so a client that drops its stream loses nothing
and resubscribes (``follow``) from any gateway process. A cancel sets the task's
cancel flag, which the run polls; it stops its upstream call (settled like a
client that left: billed for what was produced) and ends the task ``CANCELED``.

All of it is kept as the agent's ``StoragePolicy`` says (its retention); an agent
whose storage is off has no task here to read, and its messages are served live
(``gateway.conversation.a2a_live``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from gateway.dialects.a2a_task import FINAL, INPUT_REQUIRED, TERMINAL, TaskBuilder, is_final
from gateway.dialects.a2a_wire import (
    UNSUPPORTED_OPERATION,
    A2AError,
    SendParams,
    task_not_found,
)
from gateway.errors import InvalidRequest
from gateway.events import Usage
from gateway.invocation import AgentInvocation, InputItem
from gateway.pipeline import Call, Gateway
from gateway.store import ApiKey
from gateway.store.a2a_tasks import NO_ENTRY, StoredTask, TaskGone
from gateway.store.policy import StoragePolicy
from gateway.wire.responses_items import ItemReference, item_json, parse_item

log = logging.getLogger(__name__)

Json = dict[str, Any]
CANCEL_POLL_SECONDS = 0.2  # how often a run looks for a cancel request
FOLLOW_POLL_SECONDS = 0.5  # how often a follower reads a run it is not woken for
CANCEL_WAIT_SECONDS = 10.0  # how long CancelTask waits for the run to stop
RENEW_SECONDS = 2.0  # how often a run renews its lease (gateway.store.a2a_tasks.LEASE_MS)


async def load(gateway: Gateway, key: ApiKey, agent: str, task_id: str) -> StoredTask:
    """The key's task at ``agent``, or A2A's task-not-found error (saying why when the
    agent's storage is off: a task stored before is not read back)."""
    policy = gateway.storage(agent)
    if not policy.allowed:
        raise not_stored(policy, task_id)
    stored = await gateway.a2a_tasks.load(key.id, task_id)
    if stored is None or stored.agent != agent:
        raise task_not_found(task_id)
    return stored


def not_stored(policy: StoragePolicy, task_id: str) -> A2AError:
    return task_not_found(
        task_id, f"storage is off for agent '{policy.agent}' (store: never): no task is kept"
    )


@dataclass(frozen=True, slots=True)
class Prepared:
    """A task's next run before its call opens: the invocation (the message, after the
    conversation of its context) and the task it will build."""

    invocation: AgentInvocation
    builder: TaskBuilder
    continued: bool  # the message answers a task waiting for input


async def prepare(gateway: Gateway, key: ApiKey, agent: str, params: SendParams) -> Prepared:
    """The run a message asks for; an unknown task, or one that takes no message, is
    raised before any call opens."""
    message = params.message
    previous: Json | None = None
    context_id = message.context_id
    if message.task_id is not None:
        stored = await load(gateway, key, agent, message.task_id)
        state = stored.task["status"]["state"]
        if state != INPUT_REQUIRED:
            raise A2AError(
                UNSUPPORTED_OPERATION,
                f"Task '{message.task_id}' is {state}: only a task in "
                f"{INPUT_REQUIRED} takes another message.",
            )
        if context_id is not None and context_id != stored.task["contextId"]:
            raise InvalidRequest(
                "'message.contextId' is not the task's context.", param="message.contextId"
            )
        previous, context_id = stored.task, stored.task["contextId"]
    builder = TaskBuilder(agent, message.raw, context_id, previous)
    context = await _context(gateway, key, builder.context_id)
    invocation = AgentInvocation(agent=agent, input=(*context, *message.items), stream=True)
    return Prepared(invocation, builder, continued=previous is not None)


async def start(
    gateway: Gateway, key: ApiKey, call: Call, prepared: Prepared, policy: StoragePolicy
) -> TaskRun:
    """Start the run of ``prepared`` with its open ``call``, kept as ``policy`` (the
    agent's, which stores) says: the task is stored before this returns, and the run
    goes on in a tracked task that no request holds (the call closed if it cannot)."""
    run = TaskRun(
        gateway,
        key,
        call,
        prepared.builder,
        list(prepared.invocation.input),
        policy,
        continued=prepared.continued,
    )
    try:
        await run.begin()
    except BaseException:
        await call.aclose()
        raise
    gateway.tasks.spawn(run.main(), name=f"a2a task {run.task_id}")
    return run


async def _context(gateway: Gateway, key: ApiKey, context_id: str) -> list[InputItem]:
    stored = await gateway.a2a_tasks.load_context(key.id, context_id)
    items = [parse_item(raw, f"context[{i}]") for i, raw in enumerate(stored or [])]
    return [item for item in items if not isinstance(item, ItemReference)]


class TaskRun:
    """One run of a task, to its end, in a tracked task (``main``)."""

    def __init__(
        self,
        gateway: Gateway,
        key: ApiKey,
        call: Call,
        builder: TaskBuilder,
        context: list[InputItem],
        policy: StoragePolicy,
        *,
        continued: bool = False,
    ) -> None:
        self._store = gateway.a2a_tasks
        self._retention_ms = policy.retention_ms  # as it was when the task started
        self._key_id = key.id
        self._agent = call.ctx.agent
        self._call = call
        self._context = context
        self.builder = builder
        self._canceled = False
        self.run_start = NO_ENTRY  # its events are those after this entry of the task's stream
        self._last = NO_ENTRY  # the last entry of the task's stream this run knows of
        self.continued = continued

    @property
    def task_id(self) -> str:
        return self.builder.task_id

    async def begin(self) -> None:
        """Store the task, working, and its first stream responses, before anyone asks."""
        events = self.builder.begin()
        if self.continued:
            self.run_start = await self._store.last_entry(self._key_id, self.task_id)
            self._last = self.run_start
        await self._save(events)

    async def _save(self, events: list[Json]) -> None:
        stored = StoredTask(self._agent, self.builder.task, self.run_start)
        self._last = await self._store.save(
            self._key_id,
            stored,
            events,
            retention_ms=self._retention_ms,
            after=self._last,
            running=not self.builder.ended,
        )

    async def main(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        watch = asyncio.ensure_future(self._watch(task))
        try:
            async with self._call:  # closing it settles what was produced
                async for batch in self._call:
                    out = self.builder.feed(batch)
                    if out:
                        self._last = await self._store.append(
                            self._key_id,
                            self._agent,
                            self.task_id,
                            out,
                            retention_ms=self._retention_ms,
                            after=self._last,
                        )
                    if self.builder.ended:
                        break
        except asyncio.CancelledError:
            if not self._canceled:
                raise
            task.uncancel()  # our own stop, at a cancel request
        except TaskGone:
            self._gone()  # its call is closed, and settled, all the same
            return
        finally:
            watch.cancel()
        usage = self._call.hold.usage()
        final = self.builder.final(usage, canceled=self._canceled)
        # In this order: a client that saw the end sends its next turn at once, and a
        # follower that finds the task ended reads its final event.
        if self.builder.task["status"]["state"] not in ("TASK_STATE_FAILED", "TASK_STATE_CANCELED"):
            if not await self._store.running(self._key_id, self.task_id):
                self._gone()  # erased since: its conversation is not written back
                return
            items = [*self._context, *self.builder.output_items()]
            await self._store.save_context(
                self._key_id,
                self.builder.context_id,
                [item_json(i) for i in items],
                retention_ms=self._retention_ms,
            )
        try:
            await self._save(final)
        except TaskGone:
            self._gone()
            return
        if self._canceled:
            await self._store.forget_cancel(self._key_id, self.task_id)

    def _gone(self) -> None:
        log.info("A2A task %s was erased (or taken for dead) while it ran: it stops", self.task_id)

    async def _watch(self, task: asyncio.Task[Any]) -> None:
        """Look for a cancel request, and renew the run's lease, until the run ends."""
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        while True:
            await asyncio.sleep(CANCEL_POLL_SECONDS)
            try:
                if loop.time() - renewed >= RENEW_SECONDS:
                    await self._store.renew(self._key_id, self.task_id)
                    renewed = loop.time()
                asked = await self._store.cancel_requested(self._key_id, self.task_id)
            except Exception:  # a store outage: look again at the next poll
                continue
            if asked:
                self._canceled = True
                task.cancel()
                return


async def follow(
    gateway: Gateway, key: ApiKey, task_id: str, run_start: str
) -> AsyncGenerator[Json, None]:
    """The stream responses of the task's run whose events follow entry ``run_start``
    (its first: the task as submitted), to its final."""
    store = gateway.a2a_tasks
    last = run_start
    ended = False
    while True:
        changed = store.changed(task_id)
        events = await store.events_after(key.id, task_id, last)
        for event in events:
            yield event.data
            if is_final(event.data):
                return
        if events:
            last = events[-1].entry
            continue
        if ended:
            return  # no final event of this run: the task has ended another way
        stored = await store.load(key.id, task_id)
        if stored is None:
            return
        if stored.task["status"]["state"] in FINAL or not await store.running(key.id, task_id):
            # It ended since the read above (its final event was stored with it), or
            # the process running it died: read once more, then stop.
            ended = True
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), FOLLOW_POLL_SECONDS)


async def cancel(gateway: Gateway, key: ApiKey, agent: str, task_id: str) -> Json:
    """Ask the task's run to stop; the task once it has (or as it is after a wait)."""
    store = gateway.a2a_tasks
    stored = await _cancelable(gateway, key, agent, task_id)
    if stored.task["status"]["state"] == INPUT_REQUIRED or not await store.running(key.id, task_id):
        # No run to stop: it waits for the client, who gives up, or its process died.
        # (Read again: a run that just ended stored its end before its lease went.)
        stored = await _cancelable(gateway, key, agent, task_id)
        builder = TaskBuilder(agent, {}, None, stored.task, continued=False)
        final = builder.final(Usage(), canceled=True)
        await store.save(
            key.id,
            StoredTask(agent, builder.task, stored.run_start),
            final,
            retention_ms=gateway.storage(agent).retention_ms,
            after=await store.last_entry(key.id, task_id),
        )
        return builder.task
    await store.request_cancel(key.id, task_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CANCEL_WAIT_SECONDS
    while loop.time() < deadline:
        changed = store.changed(task_id)
        stored = await load(gateway, key, agent, task_id)
        if stored.task["status"]["state"] in TERMINAL:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), CANCEL_POLL_SECONDS)
    return stored.task


async def _cancelable(gateway: Gateway, key: ApiKey, agent: str, task_id: str) -> StoredTask:
    stored = await load(gateway, key, agent, task_id)
    state = stored.task["status"]["state"]
    if state in TERMINAL:
        raise A2AError(-32002, f"Task '{task_id}' is {state} and cannot be canceled.")
    return stored
