"""``gateway.server.middlewares``."""

from __future__ import annotations

from aiohttp import web
from pytest_aiohttp import AiohttpClient

from gateway.server.keys import app_value

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
