"""Erasing what is stored of one key's conversations; its record, balance and ledger stay.

``purge_key`` walks the key's index of stored responses (``schema.stored_responses``)
``batch`` ids at a time: each batch deletes those responses with their event
streams, run tokens and cancel flags, then takes their ids off the index. So
memory holds one batch whatever the key stored, a run that stops half-way
(a crash, a dropped connection) is resumed by running it again, and a second
run finds nothing left: idempotent. Every run is audited (``key.purge``) with
the count it erased. A background run still going finds its response gone at
its next write and stops.

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

BATCH = 500  # responses per batch: four keys each


@dataclass(frozen=True, slots=True)
class PurgeResult:
    key_id: str
    # The stored responses this run erased (0: nothing was left); one the index listed
    # that had expired already is not counted.
    responses: int

    def to_json(self) -> dict[str, object]:
        return {"id": self.key_id, "purged": {"responses": self.responses}, "complete": True}


def _names(key_id: str, response_id: str) -> tuple[str, ...]:
    return (
        schema.stored_response(key_id, response_id),
        schema.response_events(key_id, response_id),
        schema.response_run(key_id, response_id),
        schema.response_cancel(key_id, response_id),
    )


async def purge_key(
    store: Store,
    key_id: str,
    *,
    actor: str | None,
    batch: int = BATCH,
    progress: Callable[[int], None] | None = None,
    scan: bool = False,
) -> PurgeResult:
    """Erase every stored response of ``key_id`` (a 404 for an unknown key); ``progress``
    is told after each batch how many index entries this run has walked; ``scan`` also
    erases what the index does not list."""
    await store.get_key(key_id)
    redis = store.redis
    index = schema.stored_responses(key_id)
    erased = walked = 0
    while True:
        async with guard():
            ids = cast(list[str], await redis.zrange(index, 0, batch - 1))
        if not ids:
            break
        streams = [name for response_id in ids for name in _names(key_id, response_id)[1:]]
        async with guard():
            # Every name shares the key's hash tag: multi-key DELs work on Redis Cluster too.
            erased += await redis.delete(*(schema.stored_response(key_id, r) for r in ids))
            await redis.delete(*streams)
            await redis.zrem(index, *ids)
        walked += len(ids)
        if progress is not None:
            progress(walked)
    details: dict[str, object] = {"responses": erased}
    if scan:
        unindexed = await _erase_unindexed(store, key_id, batch)
        erased += unindexed
        details |= {"scan": True, "unindexed": unindexed}
    await store.audit(actor, "key.purge", key_id, details)
    return PurgeResult(key_id, erased)


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
