"""The console's application, mounted at ``/console`` on the admin listener: its pages,
sign-in and sign-out, its static files, its JSON (``/console/api/live``) and the admin
API's own handlers under ``/console/api/admin`` for its actions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import resources

from aiohttp import web

from gateway.pipeline import Gateway
from gateway.server.admin.table import ADMIN
from gateway.server.admin.token import ADMIN_TOKEN_DIGEST
from gateway.server.console import session
from gateway.server.console.html import page, render
from gateway.server.console.keys import key_page, keys_page
from gateway.server.console.live import Recent
from gateway.server.console.overview import overview
from gateway.server.console.routes import RECENT, live_data, live_page, routes_page
from gateway.server.console.teams import team_page, teams_page

PREFIX = "/console"
STATIC = {
    "console.js": "text/javascript",
    "console.css": "text/css",
}
LOGIN_FORM = (
    '<form class="login" method="post" action="/console/login">'
    '<label>admin token <input type="password" name="token" autocomplete="off" required '
    'autofocus></label><button type="submit">Sign in</button></form>{problem}'
)


def _static_files() -> dict[str, bytes]:
    folder = resources.files("gateway.server.console").joinpath("static")
    return {name: folder.joinpath(name).read_bytes() for name in STATIC}


def _login_page(problem: str = "", status: int = 200) -> web.Response:
    body = render(
        LOGIN_FORM, problem=render('<p class="error">{p}</p>', p=problem) if problem else ""
    )
    return web.Response(
        text=page("Sign in", body, csrf=None), content_type="text/html", status=status
    )


async def login_form(request: web.Request) -> web.Response:
    if await session.current(request) is not None:
        raise web.HTTPSeeOther(f"{PREFIX}/")
    return _login_page()


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    token = form.get("token")
    if wait := await session.refused_for(request):
        response = _login_page(f"Too many wrong tokens: try again in {wait} s.", status=429)
        response.headers["Retry-After"] = str(wait)
        return response
    if not isinstance(token, str) or not token.strip() or not session.token_matches(request, token):
        await session.failed(request)
        return _login_page("That is not the admin token.", status=401)
    response = web.HTTPSeeOther(f"{PREFIX}/")
    await session.begin(request, response)
    raise response


async def logout(request: web.Request) -> web.Response:
    response = web.HTTPSeeOther(f"{PREFIX}/login")
    await session.end(request, response)
    raise response


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    files = request.app[FILES]
    if name not in files:
        raise web.HTTPNotFound()
    return web.Response(
        body=files[name],
        content_type=STATIC[name],
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )


FILES = web.AppKey("console_files", dict[str, bytes])


def create_console_app(gateway: Gateway, token_digest: bytes) -> web.Application:
    """The console; mount it with ``app.add_subapp("/console", ...)``."""
    app = web.Application(middlewares=[session.security, session.require_session])
    app[ADMIN_TOKEN_DIGEST] = token_digest
    app[RECENT] = Recent()
    app[FILES] = _static_files()
    router = app.router
    router.add_get("/", overview)
    router.add_get("/login", login_form)
    router.add_post("/login", login)
    router.add_post("/logout", logout)
    router.add_get("/keys", keys_page)
    router.add_get("/keys/{id}", key_page)
    router.add_get("/teams", teams_page)
    router.add_get("/teams/{id}", team_page)
    router.add_get("/routes", routes_page)
    router.add_get("/live", live_page)
    router.add_get("/api/live", live_data)
    router.add_get("/static/{name}", static)
    for op in ADMIN.operations:  # the admin API's handlers, behind the session instead
        router.add_route(op.method, "/api/admin" + op.path, op.handler)

    async def listen_to_access_log(app: web.Application) -> AsyncIterator[None]:
        recent = app[RECENT]
        logger = recent.attach(gateway)
        try:
            yield
        finally:
            if logger is not None:
                logger.removeHandler(recent)

    app.cleanup_ctx.append(listen_to_access_log)
    return app
