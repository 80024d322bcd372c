"""The Pipeliner on a real Redis: one round trip for concurrent callers, each its own answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.store import pipelining
from gateway.store.pipelining import Command, Pipeliner
from tests.fakes.cutting_proxy import CuttingProxy


def incr(key: str) -> Command:
    return ("INCR", key)


def fail() -> Command:
    return ("LPUSH", "a-number", 1)  # wrong type: an error reply


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of commands in each round trip."""
    counts: list[int] = []
    pack = pipelining._pack

    def counted(commands: list[Command]) -> bytes:
        counts.append(len(commands))
        return pack(commands)

    monkeypatch.setattr(pipelining, "_pack", counted)
    return counts


async def test_concurrent_callers_share_one_round_trip(
    redis_client: aioredis.Redis, sent: list[int]
) -> None:
    pipeliner = Pipeliner(redis_client)
    results = await asyncio.gather(
        *(pipeliner.run([incr("n"), incr(f"own-{i}")]) for i in range(50))
    )
    assert sent == [100]  # one pipeline of every caller's commands
    assert sorted(r[0] for r in results) == list(range(1, 51))  # in the order queued
    assert all(r[1] == 1 for r in results)
    # Callers that come while a pipeline is in flight share the next one.
    first = asyncio.ensure_future(pipeliner.run([incr("n")]))
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(pipeliner.run([incr("n")])) for _ in range(5)]
    await asyncio.gather(first, *later)
    assert sent[1:] == [1, 5]


async def test_nothing_waits_for_company(redis_client: aioredis.Redis, sent: list[int]) -> None:
    # A settlement is submitted when its answer has gone out: alone, it goes on the next
    # turn (not held back for the next request's admission, whose critical path it would
    # then ride); queued while a round trip is under way, it joins the next one.
    pipeliner = Pipeliner(redis_client)
    assert await pipeliner.run([incr("n")]) == [1]  # the connection is open now
    alone = pipeliner.submit([incr("alone")], idempotent=True)
    await asyncio.sleep(0)
    assert sent == [1, 1]  # written on the next turn: nothing else was queued
    assert await alone == [1]
    first = asyncio.ensure_future(pipeliner.run([incr("n")]))
    await asyncio.sleep(0)  # the task queues it
    await asyncio.sleep(0)  # the pipeliner writes it
    assert sent == [1, 1, 1]
    settlement = pipeliner.submit([incr("n"), incr("m")], idempotent=True)
    assert await pipeliner.run([incr("n")]) == [4]  # queued after the settlement
    assert await first == [2]
    assert await settlement == [3, 1]
    assert sent == [1, 1, 1, 3]


async def test_an_error_reply_fails_only_its_caller(redis_client: aioredis.Redis) -> None:
    await redis_client.set("a-number", 1)
    pipeliner = Pipeliner(redis_client)
    good, bad = await asyncio.gather(
        pipeliner.run([incr("n")]), pipeliner.run([incr("m"), fail()]), return_exceptions=True
    )
    assert good == [1]
    assert isinstance(bad, ResponseError)
    assert await redis_client.get("m") == "1"  # the rest of its commands ran


async def test_a_caller_that_left_before_sending_sends_nothing(
    redis_client: aioredis.Redis,
) -> None:
    pipeliner = Pipeliner(redis_client)
    gone = asyncio.ensure_future(pipeliner.run([incr("gone")]))
    stays = asyncio.ensure_future(pipeliner.run([incr("stays")]))
    await asyncio.sleep(0)  # both queued; the sender has not run yet
    gone.cancel()
    assert await stays == [1]
    assert await redis_client.get("gone") is None


async def test_a_failed_round_trip_fails_every_caller_in_it() -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    pipeliner = Pipeliner(dead)
    results = await asyncio.gather(
        *(pipeliner.run([incr("n")]) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RedisConnectionError) for r in results)
    with pytest.raises(RedisConnectionError):  # and it keeps working for the next
        await pipeliner.run([incr("n")])
    await dead.aclose()


def test_a_pipeliner_used_by_one_loop_then_another_queues_on_the_running_one() -> None:
    """The loop the pipeliner keeps (``Pipeliner._loop``) is asked for again once it has
    stopped: a later ``asyncio.run`` gets its own answer, not a closed loop's error."""
    dead = aioredis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    pipeliner = Pipeliner(dead)

    async def once() -> type[BaseException]:
        with pytest.raises(RedisConnectionError) as failed:
            await pipeliner.run([incr("n")])
        return failed.type

    assert asyncio.run(once()) is asyncio.run(once()) is RedisConnectionError
    asyncio.run(dead.aclose())


async def test_a_round_trip_is_bounded_by_the_socket_timeout(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    redis = aioredis.Redis.from_url(redis_url, socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
    pipeliner = Pipeliner(redis)
    try:
        with pytest.raises(RedisTimeoutError):
            await pipeliner.run([("BLPOP", "nothing-comes", 2)])
        # The late reply to BLPOP is never read as the answer to a later command.
        await redis.rpush("nothing-comes", "x")
        assert await pipeliner.run([incr("n"), ("LLEN", "nothing-comes")]) == [1, 1]
    finally:
        await redis.aclose()


async def test_a_connection_redis_closed_while_idle_is_made_afresh_before_sending(
    redis_client: aioredis.Redis, sent: list[int]
) -> None:
    """Redis closed the connection while no command was running (a restart, its idle
    timeout): nothing was written on it, so even a command unsafe to repeat goes, once."""
    pipeliner = Pipeliner(redis_client)
    (own_id,) = await pipeliner.run([("CLIENT", "ID")])
    assert await redis_client.client_kill_filter(_id=own_id) == 1
    await asyncio.sleep(0.05)  # idle: the close has reached the client
    assert await pipeliner.run([incr("n")]) == [1]
    assert await redis_client.get("n") == "1"
    assert sent == [1, 1]  # no round trip failed


async def test_commands_whose_answer_was_lost_go_again_only_if_idempotent(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    """The connection broke after the commands were written: Redis ran them. A caller
    whose commands are safe to run twice gets its answer from a second round trip; any
    other gets the error, and its commands ran once."""
    proxy = CuttingProxy(int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    await proxy.start()
    redis = aioredis.Redis(host="127.0.0.1", port=proxy.port, decode_responses=True)
    pipeliner = Pipeliner(redis)
    try:
        assert await pipeliner.run([("PING",)]) == ["PONG"]
        proxy.cut_next()
        unsafe, safe = await asyncio.gather(
            pipeliner.run([incr("unsafe")]),
            pipeliner.run([incr("safe")], idempotent=True),
            return_exceptions=True,
        )
        assert isinstance(unsafe, RedisConnectionError)
        assert await redis_client.get("unsafe") == "1"  # ran, and was not sent again
        assert safe == [2]  # ran twice: INCR is not idempotent, and shows the second run
        assert proxy.connections == 2
        assert await pipeliner.run([incr("unsafe")]) == [2]  # and it keeps working
    finally:
        await redis.aclose()
        await proxy.aclose()


async def test_submitted_commands_answer_through_their_future(
    redis_client: aioredis.Redis, sent: list[int]
) -> None:
    pipeliner = Pipeliner(redis_client)
    queued = pipeliner.submit([incr("n")], idempotent=True)
    assert not queued.done()
    assert await pipeliner.run([incr("n")]) == [2]  # queued in the same turn: rode along, first
    assert queued.result() == [1]
    assert sent == [2]


async def test_a_command_that_cannot_be_packed_fails_its_round_trip_only(
    redis_client: aioredis.Redis,
) -> None:
    pipeliner = Pipeliner(redis_client)
    assert await pipeliner.run([incr("n")]) == [1]  # the connection is open: written at once
    unpackable: Any = ("SET", "k", object())
    with pytest.raises(TypeError):
        await pipeliner.run([unpackable])
    assert await pipeliner.run([incr("n")]) == [2]  # and it keeps working


def test_a_pipeliner_keeps_the_running_loop_and_takes_the_next_one(redis_url: str) -> None:
    """The loop is kept between calls (``asyncio.get_running_loop`` is a system call on
    Python 3.11); in a loop after it, the futures are that loop's."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    pipeliner = Pipeliner(client)

    async def first() -> tuple[asyncio.AbstractEventLoop, ...]:
        one, two = pipeliner.submit([incr("loops")]), pipeliner.submit([incr("loops")])
        counted, again = await one, await two
        assert again[0] == counted[0] + 1
        await client.aclose()
        return one.get_loop(), two.get_loop(), asyncio.get_running_loop()

    async def second() -> tuple[asyncio.AbstractEventLoop, ...]:
        # (Its connection is the first loop's: the caller leaves before it is sent.)
        future = pipeliner.submit([incr("loops")])
        future.cancel()
        await asyncio.sleep(0)
        return future.get_loop(), asyncio.get_running_loop()

    one, again, running = asyncio.run(first())
    assert one is again is running
    later, running = asyncio.run(second())
    assert later is running and later is not one
