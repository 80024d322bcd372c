"""The Watchdog: one timer, many waits; its expiry told apart from other cancellations."""

from __future__ import annotations

import asyncio
import gc
import weakref

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


async def test_the_watchdogs_of_a_loop_share_one_timer_at_the_earliest_deadline() -> None:
    loop = asyncio.get_running_loop()
    first, second, third = Watchdog(), Watchdog(), Watchdog()
    clock = first._clock
    assert second._clock is clock
    first.wait(loop.time() + 10)
    armed = clock._handle
    second.wait(loop.time() + 20)  # later: the timer stays as it is
    assert clock._handle is armed
    third.wait(loop.time() + 0.05)  # earlier: the timer moves to it
    assert clock._handle is not armed
    with pytest.raises(asyncio.CancelledError):
        await asyncio.sleep(1)
    assert third.timed_out() and not first.expired and not second.expired
    assert third not in clock.dogs and clock._handle is not None  # asleep until the next one
    first.deadline = None
    second.close()
    assert second not in clock.dogs
    for dog in (first, second, third):
        dog.close()
    assert not clock.dogs


async def test_each_watchdog_expires_at_its_own_deadline_on_the_shared_timer() -> None:
    early, late = Watchdog(), Watchdog()
    started = asyncio.get_running_loop().time()
    done = await asyncio.gather(
        waits(early, [1], limit=0.02),  # the timer fires for this one first...
        waits(late, [0.01, 0.01, 1], limit=0.1),  # ...then again for this one
    )
    assert list(done) == [0, 2]
    assert asyncio.get_running_loop().time() - started < 0.9
    early.close()
    late.close()


def test_a_loop_is_not_kept_alive_by_its_clock() -> None:
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def stream() -> None:
        dog = Watchdog()
        dog.wait(asyncio.get_running_loop().time() + 60)  # the shared timer armed
        dog.deadline = None
        dog.close()
        loops.append(weakref.ref(asyncio.get_running_loop()))

    for _ in range(2):
        asyncio.run(stream())
    gc.collect()
    assert [ref() for ref in loops] == [None, None]


async def test_a_watchdog_given_its_loop_shares_that_loops_clock() -> None:
    loop = asyncio.get_running_loop()
    given, looked_up = Watchdog(loop), Watchdog()
    assert given._clock is looked_up._clock and given._clock.loop is loop
    assert await waits(given, [0.01, 0.5], limit=0.1) == 1
    given.close()
    looked_up.close()
