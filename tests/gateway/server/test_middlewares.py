"""``gateway.server.middlewares``."""

from __future__ import annotations

from aiohttp import web
from pytest_aiohttp import AiohttpClient

from gateway.server import middlewares
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


async def test_a_catch_all_route_answers_the_routers_404_and_405(
    aiohttp_client: AiohttpClient,
) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_post("/hello", middlewares.wrap(middlewares.errors, hello))
    app.router.add_route(
        "*", "/{tail:.*}", middlewares.wrap(middlewares.errors, middlewares.unrouted)
    )
    client = await aiohttp_client(app)
    async with client.post("/hello") as response:
        assert await response.text() == "hello"
    for method, path, status in (
        ("GET", "/hello", 405),
        ("POST", "/nothing", 404),
        ("GET", "/", 404),
    ):
        async with client.request(method, path) as response:
            assert response.status == status
            error = (await response.json())["error"]
            assert error["code"] == ("unknown_url" if status == 404 else None)
