from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from gateway.tasks import BackgroundTasks


async def test_drain_waits_for_every_task() -> None:
    tasks = BackgroundTasks()
    done: list[int] = []

    async def work(i: int) -> None:
        await asyncio.sleep(0.01 * i)
        done.append(i)

    for i in range(3):
        tasks.spawn(work(i), name=f"w{i}")
    assert len(tasks) == 3
    await tasks.drain()
    assert sorted(done) == [0, 1, 2]
    assert len(tasks) == 0


async def test_drain_waits_for_tasks_spawned_while_draining() -> None:
    tasks = BackgroundTasks()
    done: list[str] = []

    async def child() -> None:
        await asyncio.sleep(0.01)
        done.append("child")

    async def parent() -> None:
        await asyncio.sleep(0.01)
        tasks.spawn(child())
        done.append("parent")

    tasks.spawn(parent())
    await tasks.drain()
    assert done == ["parent", "child"]


async def test_tasks_are_kept_alive_without_other_references() -> None:
    tasks = BackgroundTasks()
    done = asyncio.Event()

    async def work() -> None:
        await asyncio.sleep(0.01)
        done.set()

    tasks.spawn(work())
    gc.collect()
    await asyncio.wait_for(done.wait(), 1)


async def test_a_failing_task_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    tasks = BackgroundTasks()
    ok: list[bool] = []

    async def fail() -> None:
        raise RuntimeError("boom")

    async def succeed() -> None:
        await asyncio.sleep(0.01)
        ok.append(True)

    with caplog.at_level(logging.ERROR, logger="gateway.tasks"):
        tasks.spawn(fail(), name="the-failing-one")
        tasks.spawn(succeed())
        await tasks.drain()
    assert ok == [True]
    (record,) = [r for r in caplog.records if r.name == "gateway.tasks"]
    assert "the-failing-one" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


async def test_drain_gives_up_at_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    tasks = BackgroundTasks()
    release = asyncio.Event()
    tasks.spawn(release.wait())
    loop = asyncio.get_running_loop()
    start = loop.time()
    with caplog.at_level(logging.ERROR, logger="gateway.tasks"):
        await tasks.drain(timeout=0.05)
    assert loop.time() - start < 0.5
    assert "did not finish" in caplog.text
    assert len(tasks) == 1
    release.set()
    await tasks.drain()
    assert len(tasks) == 0


async def test_drain_with_nothing_to_do() -> None:
    await BackgroundTasks().drain(timeout=0)


async def test_drain_waits_for_held_futures_and_what_their_callbacks_spawn() -> None:
    tasks = BackgroundTasks()
    done: list[str] = []
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def then() -> None:
        done.append("spawned")

    def callback(done_future: asyncio.Future[None]) -> None:
        tasks.spawn(then())
        tasks.release(done_future)

    future.add_done_callback(callback)
    tasks.hold(future)
    assert len(tasks) == 1
    asyncio.get_running_loop().call_later(0.01, future.set_result, None)
    await tasks.drain()
    assert done == ["spawned"] and len(tasks) == 0
