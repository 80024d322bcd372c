"""The Watchdog: one timer, many waits; its expiry told apart from other cancellations."""

from __future__ import annotations

import asyncio

import pytest

from gateway.watchdog import Watchdog


async def waits(dog: Watchdog, delays: list[float], limit: float) -> int:
    """Sleep ``delays`` in turn, each under ``limit``; the number that finished."""
    loop = asyncio.get_running_loop()
    done = 0
    for delay in delays:
        dog.wait(loop.time() + limit)
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            if dog.timed_out():
                return done
            raise
        finally:
            dog.deadline = None
        done += 1
    return done


async def test_many_short_waits_pass_and_a_long_one_expires() -> None:
    dog = Watchdog()
    assert await waits(dog, [0.01] * 20 + [0.5, 0.01], limit=0.1) == 20
    dog.close()


async def test_time_between_waits_does_not_count() -> None:
    dog = Watchdog()
    loop = asyncio.get_running_loop()
    for _ in range(3):
        dog.wait(loop.time() + 0.05)
        await asyncio.sleep(0.01)
        dog.deadline = None
        await asyncio.sleep(0.1)  # busy elsewhere: not a wait
    assert not dog.expired
    dog.close()


async def test_a_shorter_deadline_rearms_the_timer() -> None:
    dog = Watchdog()
    assert await waits(dog, [0.01], limit=10) == 1
    started = asyncio.get_running_loop().time()
    assert await waits(dog, [5], limit=0.05) == 0
    assert asyncio.get_running_loop().time() - started < 1
    dog.close()


async def test_another_cancellation_is_not_taken_for_a_timeout() -> None:
    dog = Watchdog()
    task = asyncio.ensure_future(waits(dog, [5], limit=10))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not dog.expired
    dog.close()


async def test_expire_ends_the_current_wait_now() -> None:
    dog = Watchdog()
    task = asyncio.ensure_future(waits(dog, [5], limit=10))
    await asyncio.sleep(0.01)
    dog.expire()
    assert await asyncio.wait_for(task, 1) == 0
    dog.close()
