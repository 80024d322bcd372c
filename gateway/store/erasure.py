"""Erasing what is stored of one key's conversations; its record, balance and ledger stay.

``purge_key`` walks the key's index of each ``StoredKind`` (stored responses:
``schema.stored_responses``; A2A tasks and A2A contexts) ``batch`` ids at a time:
each batch deletes those values with what goes with them (a response's or a
task's event stream, run token and cancel flag), then takes their ids off the
index; once a kind's index is empty, the lists of it that name ids (A2A's task
list per agent) go too. So memory holds one batch
whatever the key stored, a run that stops half-way (a crash, a dropped
connection) is resumed by running it again, and a second run finds nothing
left: idempotent. Every run is audited (``key.purge``) with the counts it
erased. A background run still going loses its run token and stops.

Revoke first (``gateway keys revoke --purge``) so that no new request stores
more meanwhile: a request already past authentication can still store its answer.

Responses stored before the index existed are not listed in it; ``scan`` also
finds them with a SCAN of the whole keyspace (``MATCH`` on the key's names), as
bounded in memory but as long as the keyspace is large.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from gateway.store import schema
from gateway.store.store import Store, guard

BATCH = 500  # ids per batch (a response: four Redis keys)


@dataclass(frozen=True, slots=True)
class StoredKind:
    """One kind of content a key stores, each value listed in a per-key index (a sorted
    set of ids by expiry, written with the value by ``lua/save_indexed.lua``).

    A new store of content adds its own to ``KINDS`` and is erased with the others."""

    name: str  # as counted in a purge's result and audit record
    index: Callable[[str], str]  # key id -> the index
    # key id, id -> the value's Redis key, then what goes with it (a response's stream)
    names: Callable[[str, str], tuple[str, ...]]
    # key id -> a set naming the key's other lists of these ids (A2A's task list per
    # agent), deleted once every value is: ids only, but nothing need stay of them
    lists: Callable[[str], str] | None = None


def _response_names(key_id: str, response_id: str) -> tuple[str, ...]:
    return (
        schema.stored_response(key_id, response_id),
        schema.response_events(key_id, response_id),
        schema.response_run(key_id, response_id),
        schema.response_cancel(key_id, response_id),
    )


def _task_names(key_id: str, task_id: str) -> tuple[str, ...]:
    return (
        schema.a2a_task(key_id, task_id),
        schema.a2a_task_events(key_id, task_id),
        schema.a2a_task_run(key_id, task_id),
        schema.a2a_task_cancel(key_id, task_id),
    )


def _context_names(key_id: str, context_id: str) -> tuple[str, ...]:
    return (schema.a2a_context(key_id, context_id),)


RESPONSES = StoredKind("responses", schema.stored_responses, _response_names)
A2A_TASKS = StoredKind("a2a_tasks", schema.a2a_task_index, _task_names, schema.a2a_task_lists)
A2A_CONTEXTS = StoredKind("a2a_contexts", schema.a2a_context_index, _context_names)
KINDS: tuple[StoredKind, ...] = (RESPONSES, A2A_TASKS, A2A_CONTEXTS)


@dataclass(frozen=True, slots=True)
class PurgeResult:
    key_id: str
    # Per kind, the values this run erased (0: nothing was left); one the index listed
    # that had expired already is not counted.
    erased: tuple[tuple[str, int], ...]

    @property
    def responses(self) -> int:
        return self.count(RESPONSES)

    def count(self, kind: StoredKind) -> int:
        return dict(self.erased).get(kind.name, 0)

    def to_json(self) -> dict[str, object]:
        return {"id": self.key_id, "purged": dict(self.erased), "complete": True}


async def purge_key(
    store: Store,
    key_id: str,
    *,
    actor: str | None,
    batch: int = BATCH,
    progress: Callable[[int], None] | None = None,
    scan: bool = False,
    kinds: tuple[StoredKind, ...] = KINDS,
) -> PurgeResult:
    """Erase every stored value of ``key_id``, kind by kind (a 404 for an unknown key);
    ``progress`` is told after each batch how many index entries this run has walked;
    ``scan`` also erases the stored responses the index does not list."""
    await store.get_key(key_id)
    walked = 0

    def walk(n: int) -> None:
        nonlocal walked
        walked += n
        if progress is not None:
            progress(walked)

    counts = {kind.name: await _erase_kind(store, key_id, kind, batch, walk) for kind in kinds}
    details: dict[str, object] = dict(counts)
    if scan:
        unindexed = await _erase_unindexed(store, key_id, batch)
        counts[RESPONSES.name] = counts.get(RESPONSES.name, 0) + unindexed
        details |= {"scan": True, "unindexed": unindexed}
    await store.audit(actor, "key.purge", key_id, details)
    return PurgeResult(key_id, tuple(counts.items()))


async def _erase_kind(
    store: Store, key_id: str, kind: StoredKind, batch: int, walk: Callable[[int], None]
) -> int:
    """Erase every value of ``kind`` the key's index lists, ``batch`` at a time."""
    redis = store.redis
    index = kind.index(key_id)
    erased = 0
    while True:
        async with guard():
            ids = cast(list[str], await redis.zrange(index, 0, batch - 1))
        if not ids:
            if kind.lists is not None:
                await _erase_lists(store, kind.lists(key_id))
            return erased
        names = [kind.names(key_id, one) for one in ids]
        async with guard():
            # Every name shares the key's hash tag: multi-key DELs work on Redis Cluster too.
            erased += await redis.delete(*(n[0] for n in names))
            companions = [name for n in names for name in n[1:]]
            if companions:
                await redis.delete(*companions)
            await redis.zrem(index, *ids)
        walk(len(ids))


async def _erase_lists(store: Store, lists: str) -> None:
    """Delete the lists the set ``lists`` names (one per agent: a handful), then it."""
    async with guard():
        names = cast(set[str], await store.redis.smembers(lists))
        await store.redis.delete(*names, lists)


_NOT_RESPONSES = (":events", ":run", ":cancel")


async def _erase_unindexed(store: Store, key_id: str, batch: int) -> int:
    """Erase the key's response names a SCAN finds, ``batch`` at a time; how many were
    stored responses (not their streams, runs or flags)."""
    redis = store.redis
    erased = 0
    names: list[str] = []

    async def flush() -> int:
        responses = [n for n in names if not n.endswith(_NOT_RESPONSES)]
        others = [n for n in names if n.endswith(_NOT_RESPONSES)]
        names.clear()
        async with guard():
            deleted = await redis.delete(*responses) if responses else 0
            if others:
                await redis.delete(*others)
        return int(deleted)

    pattern = schema.stored_response_pattern(key_id)
    async with guard():
        async for name in redis.scan_iter(match=pattern, count=1000):
            names.append(str(name))
            if len(names) >= batch:
                erased += await flush()
    if names:
        erased += await flush()
    return erased
