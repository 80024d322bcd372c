"""Stored Open Responses responses: the response object and the context that produced it.

Each is one JSON string under the creating key's hash tag, with the retention
as its TTL. Only the creating key can read, chain or delete it: the key id is
part of the Redis key, so another key's lookup simply finds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis import asyncio as aioredis

from gateway.store import schema
from gateway.store.store import guard


@dataclass(frozen=True, slots=True)
class StoredResponse:
    response: dict[str, Any]  # the response object as the client saw it
    input: list[dict[str, Any]]  # every input item of its context, oldest first


def encode(stored: StoredResponse) -> bytes:
    """A stored response as its JSON string in Redis."""
    return orjson.dumps({"response": stored.response, "input": stored.input})


# The statuses of a response that has ended.
TERMINAL = ("completed", "failed", "incomplete", "cancelled")


class ResponseStore:
    def __init__(self, redis: aioredis.Redis, retention_seconds: int) -> None:
        self._redis = redis
        self._ttl = retention_seconds

    async def save(self, key_id: str, stored: StoredResponse, *, update: bool = False) -> None:
        """Store a response; ``update`` only replaces one still stored (not deleted meanwhile)."""
        blob = encode(stored)
        name = schema.stored_response(key_id, stored.response["id"])
        async with guard():
            await self._redis.set(name, blob, ex=self._ttl, xx=update)

    async def load(self, key_id: str, response_id: str) -> StoredResponse | None:
        async with guard():
            blob = cast(
                str | None, await self._redis.get(schema.stored_response(key_id, response_id))
            )
        if blob is None:
            return None
        data = orjson.loads(blob)
        return StoredResponse(data["response"], data["input"])

    async def delete(self, key_id: str, response_id: str) -> bool:
        async with guard():
            deleted = await self._redis.delete(schema.stored_response(key_id, response_id))
        return bool(deleted)
