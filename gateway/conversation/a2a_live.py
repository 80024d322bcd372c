"""A2A for an agent whose storage is off (``store: never``): a task served live, nothing kept.

The task runs inside the request that sent its message, and its stream
responses go straight from the ``TaskBuilder`` to that client: nothing of it
reaches Redis, not even while it runs (its bill is metered as any call's, which
keeps no content). So there is nothing to read back, follow or cancel from
elsewhere: ``GetTask``, ``SubscribeToTask`` and ``CancelTask`` of its id are
A2A's task-not-found error saying storage is off, ``ListTasks`` lists nothing,
and what needs a kept task is refused before any call is made (an invalid-params
error, ``code: storage_disabled``): ``configuration.returnImmediately`` (there is
no task to come back to), ``message.taskId`` and ``message.contextId`` (they
continue a kept task or conversation). A client that leaves stops the call, which
is settled for what it produced, as at the other doors.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from gateway.dialects.a2a_task import TaskBuilder
from gateway.dialects.a2a_wire import SendParams
from gateway.invocation import AgentInvocation
from gateway.pipeline import Call
from gateway.store.policy import StoragePolicy

Json = dict[str, Any]


def refuse(policy: StoragePolicy, params: SendParams) -> None:
    """The invalid-params error for what ``params`` asks that needs a kept task."""
    message = params.message
    if params.return_immediately:
        needs = "the task would have to be kept to be read back"
        raise policy.refusal("configuration.returnImmediately", needs)
    if message.task_id is not None:
        raise policy.refusal("message.taskId", "it continues a kept task")
    if message.context_id is not None:
        raise policy.refusal("message.contextId", "it continues a kept conversation")


class LiveTask:
    """One task served in its request: ``events`` runs it, ``task`` is it as it ends."""

    def __init__(self, call: Call, builder: TaskBuilder) -> None:
        self._call = call
        self._builder = builder

    @property
    def task(self) -> Json:
        return self._builder.task

    async def events(self) -> AsyncGenerator[Json, None]:
        """Its stream responses, as a kept task's: submitted, working, the text as it
        comes, the final status with the cost. Closing it early closes the call."""
        builder = self._builder
        async with self._call:  # closing it settles what was produced
            for event in builder.begin():
                yield event
            async for batch in self._call:
                for event in builder.feed(batch):
                    yield event
                if builder.ended:
                    break
        for event in builder.final(self._call.hold.usage()):
            yield event


def prepare(
    agent: str, params: SendParams, policy: StoragePolicy
) -> tuple[AgentInvocation, TaskBuilder]:
    """The invocation of a message to an agent that stores nothing, and the task it
    builds; what needs a kept task is refused before any call opens."""
    refuse(policy, params)
    message = params.message
    invocation = AgentInvocation(agent=agent, input=message.items, stream=True)
    return invocation, TaskBuilder(agent, message.raw, None)
