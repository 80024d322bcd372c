from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis

from gateway.store import schema
from gateway.store.cipher import PREFIX, ContentCipher, UnreadableContent
from gateway.store.responses import ResponseStore, StoredResponse

KEY = base64.b64decode(base64.b64encode(bytes(range(32))))


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
    store = ResponseStore(redis)
    assert await store.load("key1", "resp_1") is None
    await store.save("key1", stored(text="héllo ✓"), 3_600_000)
    got = await store.load("key1", "resp_1")
    assert got == stored(text="héllo ✓")
    assert await store.delete("key1", "resp_1") is True
    assert await store.load("key1", "resp_1") is None
    assert await store.delete("key1", "resp_1") is False
    assert await redis.zcard(schema.stored_responses("key1")) == 0  # off the index too


async def test_scoped_to_the_key(redis: Any) -> None:
    store = ResponseStore(redis)
    await store.save("key1", stored(), 3_600_000)
    assert await store.load("key2", "resp_1") is None
    assert await store.delete("key2", "resp_1") is False
    assert await store.load("key1", "resp_1") is not None
    assert sorted(await redis.keys("*")) == sorted(
        [schema.stored_responses("key1"), schema.stored_response("key1", "resp_1")]
    )
    assert "{key1}" in schema.stored_response("key1", "resp_1")  # one cluster slot per key
    assert "{key1}" in schema.stored_responses("key1")


async def test_retention_is_the_ttl(redis: Any) -> None:
    store = ResponseStore(redis)
    await store.save("key1", stored(), 120_000)
    ttl = await redis.ttl(schema.stored_response("key1", "resp_1"))
    assert 110 < ttl <= 120
    assert 110 < await redis.ttl(schema.stored_responses("key1")) <= 120


async def test_the_index_lists_each_response_until_it_expires(redis: Any) -> None:
    """What erasure walks: every stored response, scored by its expiry; the index lives
    as long as its longest-lived entry, and entries of expired responses are dropped."""
    store = ResponseStore(redis)
    await store.save("key1", stored("resp_1"), 600_000)
    await store.save("key1", stored("resp_2"), 60_000)  # a shorter route retention
    index = schema.stored_responses("key1")
    assert await redis.zrange(index, 0, -1) == ["resp_2", "resp_1"]
    assert await redis.ttl(index) > 500  # not shortened by the shorter one
    await redis.zadd(index, {"resp_gone": 1})  # expired long ago
    await store.save("key1", stored("resp_3"), 60_000)
    assert "resp_gone" not in await redis.zrange(index, 0, -1)


async def test_save_overwrites(redis: Any) -> None:
    """A background response is saved in progress, then again when it ends."""
    store = ResponseStore(redis)
    await store.save("key1", stored(text="first"), 60_000)
    await store.save("key1", stored(text="second"), 60_000)
    got = await store.load("key1", "resp_1")
    assert got is not None and got.response["output"] == ["second"]


async def test_update_does_not_bring_back_a_deleted_response(redis: Any) -> None:
    store = ResponseStore(redis)
    await store.save("key1", stored(text="first"), 60_000)
    await store.save("key1", stored(text="second"), 60_000, update=True)
    got = await store.load("key1", "resp_1")
    assert got is not None and got.response["output"] == ["second"]
    await store.delete("key1", "resp_1")
    await store.save("key1", stored(text="third"), 60_000, update=True)
    assert await store.load("key1", "resp_1") is None
    assert await redis.zcard(schema.stored_responses("key1")) == 0


async def test_encrypted_redis_holds_no_readable_text(redis: Any) -> None:
    store = ResponseStore(redis, ContentCipher(KEY))
    await store.save("key1", stored(text="the payroll of 2026"), 60_000)
    raw = await redis.get(schema.stored_response("key1", "resp_1"))
    assert raw.startswith(PREFIX) and "payroll" not in raw and "resp_1" not in raw
    assert await store.load("key1", "resp_1") == stored(text="the payroll of 2026")
    # Plain text stored before encryption was turned on is still read.
    await ResponseStore(redis).save("key1", stored("resp_old", "older"), 60_000)
    assert await store.load("key1", "resp_old") == stored("resp_old", "older")


async def test_a_ciphertext_moved_to_another_place_does_not_open(redis: Any) -> None:
    store = ResponseStore(redis, ContentCipher(KEY))
    await store.save("key1", stored(text="mine"), 60_000)
    sealed = await redis.get(schema.stored_response("key1", "resp_1"))
    await redis.set(schema.stored_response("key2", "resp_1"), sealed)  # another key's
    await redis.set(schema.stored_response("key1", "resp_2"), sealed)  # another response
    for key_id, response_id in (("key2", "resp_1"), ("key1", "resp_2")):
        with pytest.raises(UnreadableContent):
            await store.load(key_id, response_id)


async def test_without_the_key_sealed_content_is_an_error_not_garbage(redis: Any) -> None:
    await ResponseStore(redis, ContentCipher(KEY)).save("key1", stored(), 60_000)
    with pytest.raises(UnreadableContent):
        await ResponseStore(redis).load("key1", "resp_1")
