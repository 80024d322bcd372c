"""Stored Open Responses responses: the response object and the context that produced it.

Each is one JSON string under the creating key's hash tag, with the retention
as its TTL, sealed by the store's ``ContentCipher`` (bound to its Redis key)
when encryption is on. Only the creating key can read, chain or delete it: the
key id is part of the Redis key, so another key's lookup simply finds nothing.
Each is also listed in its key's index (``schema.stored_responses``), which is
what erasing a key's conversations walks (``gateway.store.erasure``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis import asyncio as aioredis

from gateway.store import schema
from gateway.store.cipher import PLAINTEXT, ContentCipher
from gateway.store.store import guard, load_script


@dataclass(frozen=True, slots=True)
class StoredResponse:
    response: dict[str, Any]  # the response object as the client saw it
    input: list[dict[str, Any]]  # every input item of its context, oldest first


def encode(stored: StoredResponse) -> bytes:
    """A stored response as its JSON, before it is sealed."""
    return orjson.dumps({"response": stored.response, "input": stored.input})


def now_ms() -> int:
    return int(time.time() * 1000)


# The statuses of a response that has ended.
TERMINAL = ("completed", "failed", "incomplete", "cancelled")


class ResponseStore:
    def __init__(self, redis: aioredis.Redis, cipher: ContentCipher = PLAINTEXT) -> None:
        self._redis = redis
        self.cipher = cipher
        self._save = load_script(redis, "save_indexed")

    def seal(self, key_id: str, stored: StoredResponse) -> str:
        """``stored`` as its value in Redis (sealed to its place when encryption is on)."""
        name = schema.stored_response(key_id, stored.response["id"])
        return self.cipher.seal(encode(stored), name)

    async def save(
        self, key_id: str, stored: StoredResponse, retention_ms: int, *, update: bool = False
    ) -> None:
        """Store a response for ``retention_ms``; ``update`` only replaces one still
        stored (not deleted meanwhile)."""
        response_id = stored.response["id"]
        keys = [schema.stored_response(key_id, response_id), schema.stored_responses(key_id)]
        args = [self.seal(key_id, stored), retention_ms, now_ms(), response_id, int(update)]
        async with guard():
            await self._save(keys=keys, args=args)

    async def load(self, key_id: str, response_id: str) -> StoredResponse | None:
        name = schema.stored_response(key_id, response_id)
        async with guard():
            value = cast(str | None, await self._redis.get(name))
        if value is None:
            return None
        data = orjson.loads(self.cipher.open(value, name))
        return StoredResponse(data["response"], data["input"])

    async def delete(self, key_id: str, response_id: str) -> bool:
        async with guard():
            deleted = await self._redis.delete(schema.stored_response(key_id, response_id))
            await self._redis.zrem(schema.stored_responses(key_id), response_id)
        return bool(deleted)
