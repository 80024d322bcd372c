from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis

from gateway.store import schema
from gateway.store.responses import ResponseStore, StoredResponse


@pytest.fixture
async def redis() -> AsyncIterator[Any]:
    client = FakeAsyncRedis(decode_responses=True)
    yield client
    await client.aclose()


def stored(response_id: str = "resp_1", text: str = "hi") -> StoredResponse:
    return StoredResponse(
        {"id": response_id, "object": "response", "status": "completed", "output": [text]},
        [{"type": "message", "role": "user", "content": text, "id": "msg_1_in0"}],
    )


async def test_save_load_delete(redis: Any) -> None:
    store = ResponseStore(redis, retention_seconds=3600)
    assert await store.load("key1", "resp_1") is None
    await store.save("key1", stored(text="héllo ✓"))
    got = await store.load("key1", "resp_1")
    assert got == stored(text="héllo ✓")
    assert await store.delete("key1", "resp_1") is True
    assert await store.load("key1", "resp_1") is None
    assert await store.delete("key1", "resp_1") is False


async def test_scoped_to_the_key(redis: Any) -> None:
    store = ResponseStore(redis, retention_seconds=3600)
    await store.save("key1", stored())
    assert await store.load("key2", "resp_1") is None
    assert await store.delete("key2", "resp_1") is False
    assert await store.load("key1", "resp_1") is not None
    assert await redis.keys("*") == [schema.stored_response("key1", "resp_1")]
    assert "{key1}" in schema.stored_response("key1", "resp_1")  # one cluster slot per key


async def test_retention_is_the_ttl(redis: Any) -> None:
    store = ResponseStore(redis, retention_seconds=120)
    await store.save("key1", stored())
    ttl = await redis.ttl(schema.stored_response("key1", "resp_1"))
    assert 110 < ttl <= 120


async def test_save_overwrites(redis: Any) -> None:
    """A background response is saved in progress, then again when it ends."""
    store = ResponseStore(redis, retention_seconds=60)
    await store.save("key1", stored(text="first"))
    await store.save("key1", stored(text="second"))
    got = await store.load("key1", "resp_1")
    assert got is not None and got.response["output"] == ["second"]


async def test_update_does_not_bring_back_a_deleted_response(redis: Any) -> None:
    store = ResponseStore(redis, retention_seconds=60)
    await store.save("key1", stored(text="first"))
    await store.save("key1", stored(text="second"), update=True)
    got = await store.load("key1", "resp_1")
    assert got is not None and got.response["output"] == ["second"]
    await store.delete("key1", "resp_1")
    await store.save("key1", stored(text="third"), update=True)
    assert await store.load("key1", "resp_1") is None
