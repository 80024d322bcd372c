"""The Redis side of background responses: the write script's states, trimming, followers."""

from __future__ import annotations

import os

import orjson
import pytest
from redis import asyncio as aioredis

from gateway.errors import ServiceUnavailable
from gateway.settings import ResponsesSettings
from gateway.store import schema
from gateway.store.cipher import ContentCipher
from gateway.store.response_runs import EventLog, ResponseRuns, entry_id
from gateway.store.responses import ResponseStore, StoredResponse
from gateway.store.settings import RedisSettings

TTL = 60_000
RESPONSE = StoredResponse({"id": "r", "status": "in_progress"}, [])
DONE = StoredResponse({"id": "r", "status": "completed"}, [])


def test_the_log_keeps_the_latest_events_within_both_bounds() -> None:
    log = EventLog(max_events=3, max_bytes=100)
    for _ in range(5):
        log.add(10)
    assert log.first == 2 and log.min_id() == entry_id(2) == "0-3"
    log.add(90)  # four events, then 10 + 10 + 90 > 100: the two oldest go
    assert log.first == 4
    log.add(500)  # alone beyond the bound, the newest still stays
    assert log.first == 6


def test_nothing_trimmed_means_no_trim() -> None:
    log = EventLog(max_events=3, max_bytes=100)
    log.add(1)
    assert log.min_id() == ""


@pytest.fixture
async def runs(redis_client: aioredis.Redis, redis_url: str) -> ResponseRuns:
    settings = ResponsesSettings(retention_seconds=3600, events_max=4, max_followers=1)
    made = ResponseRuns(redis_client, RedisSettings(url=redis_url), settings)
    yield made  # type: ignore[misc]
    await made.aclose()


def _events(first: int, n: int) -> list[tuple[int, str, bytes]]:
    return [(seq, "response.output_text.delta", b'{"n":%d}' % seq) for seq in range(first, n)]


async def test_a_run_writes_while_it_holds_its_token(
    runs: ResponseRuns, redis_client: aioredis.Redis
) -> None:
    assert await runs.write("k", "r", "t1", "begin", TTL, _events(0, 2), RESPONSE) == "ok"
    assert await runs.running("k", "r") and await runs.streamed("k", "r")
    assert await runs.write("k", "r", "t2", "step", TTL, _events(2, 3)) == "lost"  # not its run
    assert await runs.last_seq("k", "r") == 1
    log = runs.log()
    for _ in range(6):
        log.add(1)
    assert await runs.write("k", "r", "t1", "step", TTL, _events(2, 6), min_id=log.min_id()) == "ok"
    kept = await runs.read("k", "r", -1, block=False)
    assert [e.seq for e in kept] == [2, 3, 4, 5]
    assert await runs.request_cancel("k", "r") is True
    assert await runs.write("k", "r", "t1", "step", TTL) == "cancel"
    assert await runs.write("k", "r", "t1", "final", TTL, (), DONE) == "done"
    assert not await runs.running("k", "r")
    assert orjson.loads(await redis_client.get(schema.stored_response("k", "r"))) == {
        "response": DONE.response,
        "input": [],
    }
    assert await redis_client.zrange(schema.stored_responses("k"), 0, -1) == ["r"]
    assert not await redis_client.exists(schema.response_cancel("k", "r"))
    assert 0 < await redis_client.ttl(schema.response_events("k", "r")) <= 60


async def test_a_deleted_response_ends_its_run(runs: ResponseRuns) -> None:
    assert await runs.write("k", "r", "t1", "begin", TTL, (), RESPONSE) == "ok"
    await runs.delete("k", "r")
    await runs.write("k", "r", "t1", "step", TTL)  # the response itself is still there
    await runs._redis.delete(schema.stored_response("k", "r"))
    assert await runs.write("k", "r", "t1", "step", TTL, _events(0, 1)) == "gone"
    assert not await runs.running("k", "r") and not await runs.streamed("k", "r")


async def test_an_abandoned_run_can_be_claimed_once(runs: ResponseRuns) -> None:
    assert await runs.write("k", "r", "t1", "begin", TTL, (), RESPONSE) == "ok"
    assert not await runs.claim("k", "r", "t2")  # its runner holds it
    await runs._redis.delete(schema.response_run("k", "r"))
    assert await runs.claim("k", "r", "t2")
    assert not await runs.claim("k", "r", "t3")
    assert await runs.write("k", "r", "t1", "step", TTL) == "lost"


async def test_followers_are_capped(runs: ResponseRuns) -> None:
    async with runs.following():
        with pytest.raises(ServiceUnavailable):
            async with runs.following():
                pass
    async with runs.following():
        pass


async def test_encrypted_streams_hold_no_readable_text(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    """Each event is sealed bound to its stream and entry; followers read it in clear."""
    cipher = ContentCipher(os.urandom(32))
    settings = ResponsesSettings(events_max=4, max_followers=1)
    runs = ResponseRuns(redis_client, RedisSettings(url=redis_url), settings, cipher)
    events = [(0, "response.output_text.delta", b'{"delta":"salary of Alice"}')]
    secret = StoredResponse({"id": "r", "output": ["salary of Alice"]}, [])
    assert await runs.write("k", "r", "t1", "begin", TTL, events, secret) == "ok"
    [entry] = await redis_client.xrange(schema.response_events("k", "r"))
    assert entry[1]["t"] == "response.output_text.delta"  # the type is not content
    assert "Alice" not in entry[1]["e"]
    assert "Alice" not in await redis_client.get(schema.stored_response("k", "r"))
    [event] = await runs.read("k", "r", -1, block=False)
    assert event.data == '{"delta":"salary of Alice"}'
    assert await ResponseStore(redis_client, cipher).load("k", "r") == secret
    await runs.aclose()
