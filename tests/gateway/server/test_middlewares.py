"""``gateway.server.middlewares``: the request ids the gateway makes."""

from __future__ import annotations

import os
import re
from itertools import islice

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from gateway.server import middlewares
from gateway.server.keys import app_value


def test_request_ids_are_req_and_32_random_hex_digits_each_once() -> None:
    ids = list(islice(middlewares._random_ids(), 3 * middlewares._IDS_PER_READ + 5))
    assert all(re.fullmatch(r"req_[0-9a-f]{32}", rid) for rid in ids)
    assert len(set(ids)) == len(ids)  # across reads from the OS too


def test_two_generators_make_different_ids() -> None:
    first, second = middlewares._random_ids(), middlewares._random_ids()
    assert next(first) != next(second)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_does_not_reuse_its_parents_ids() -> None:
    next(middlewares._ids)  # the parent has ids read and not used yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        try:
            os.write(write, next(middlewares._ids).encode())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert re.fullmatch(r"req_[0-9a-f]{32}", child)
    assert child != next(middlewares._ids)


NOTE = web.AppKey("note", str)


async def test_app_value_is_the_applications_own_else_its_parents(
    aiohttp_client: AiohttpClient,
) -> None:
    async def read(request: web.Request) -> web.Response:
        return web.Response(text=str(app_value(request, NOTE)))

    parent, child, bare = web.Application(), web.Application(), web.Application()
    parent[NOTE] = "parent's"
    for app in (parent, child, bare):
        app.router.add_get("/note", read)
    parent.add_subapp("/child", child)
    parent.add_subapp("/bare", bare)
    child[NOTE] = "child's"
    lone = web.Application()
    lone.router.add_get("/note", read)
    client, alone = await aiohttp_client(parent), await aiohttp_client(lone)
    for served, path, note in (
        (client, "/note", "parent's"),
        (client, "/child/note", "child's"),
        (client, "/bare/note", "parent's"),
        (alone, "/note", "None"),
    ):
        async with served.get(path) as response:
            assert await response.text() == note
