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

Responses, A2A tasks and contexts stored before their index existed are not
listed in it; ``scan`` also finds them with SCANs of the whole keyspace
(``MATCH`` on the key's names: one for responses, one for A2A), as bounded in
memory but as long as the keyspace is large.
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
    ``scan`` also erases what the indexes do not list (stored before they existed)."""
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
        for name, n in unindexed.items():
            counts[name] = counts.get(name, 0) + n
        details |= {"scan": True, "unindexed": sum(unindexed.values())}
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


_COMPANIONS = (":events", ":run", ":cancel")


def _response_kind(key_id: str, name: str) -> str | None:
    """What a name a SCAN of the key's responses found is: a response, or (``None``)
    what goes with one."""
    return None if name.endswith(_COMPANIONS) else RESPONSES.name


def _a2a_kind(key_id: str, name: str) -> str | None:
    """What a name a SCAN of the key's A2A state found is: a task, a context, or
    (``None``) a task's stream, lease or flag, a task list, an index."""
    for kind, prefix in (
        (A2A_TASKS, schema.a2a_task(key_id, "")),
        (A2A_CONTEXTS, schema.a2a_context(key_id, "")),
    ):
        if name.startswith(prefix) and ":" not in name[len(prefix) :]:
            return kind.name
    return None


# Per SCAN: its pattern (key id -> the names it finds), and what each name it finds is.
_SCANS: tuple[tuple[Callable[[str], str], Callable[[str, str], str | None]], ...] = (
    (schema.stored_response_pattern, _response_kind),
    (schema.a2a_pattern, _a2a_kind),
)


async def _erase_unindexed(store: Store, key_id: str, batch: int) -> dict[str, int]:
    """Erase the key's stored names SCANs find, ``batch`` at a time; per kind, how many
    were values (not what goes with them)."""
    redis = store.redis
    erased: dict[str, int] = {}
    names: list[str] = []

    async def flush(kind_of: Callable[[str, str], str | None]) -> None:
        groups: dict[str | None, list[str]] = {}
        for name in names:
            groups.setdefault(kind_of(key_id, name), []).append(name)
        names.clear()
        async with guard():
            for kind, group in groups.items():
                deleted = int(await redis.delete(*group))
                if kind is not None:
                    erased[kind] = erased.get(kind, 0) + deleted

    for pattern, kind_of in _SCANS:
        async with guard():
            async for name in redis.scan_iter(match=pattern(key_id), count=1000):
                names.append(str(name))
                if len(names) >= batch:
                    await flush(kind_of)
        if names:
            await flush(kind_of)
    return erased
