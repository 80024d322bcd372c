"""Where the admin API is served: a sub-application of the public app, or a listener
of its own (``admin.listen``)."""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.config import GatewayConfig
from gateway.pipeline import Gateway
from gateway.reload import ConfigWatcher
from gateway.server import console, middlewares, openapi
from gateway.server.admin.request import MAX_BODY_BYTES
from gateway.server.admin.table import ADMIN, ADMIN_PREFIX
from gateway.server.admin.token import ADMIN_TOKEN_DIGEST, admin_token, digest, require_token
from gateway.server.connection import GatewayRunner
from gateway.server.keys import GATEWAY, WATCHER
from gateway.server.listen import start_site

log = logging.getLogger("gateway.server.admin")

__all__ = ["admin_token", "create_admin_app", "create_admin_site_app", "start_admin_site"]


def create_admin_app(token: str) -> web.Application:
    """The admin sub-application; mount it with ``app.add_subapp("/admin", ...)``."""
    if not token:
        raise ValueError("the admin token is empty")
    admin = web.Application(middlewares=[require_token])
    admin[ADMIN_TOKEN_DIGEST] = digest(token)
    for op in ADMIN.operations:  # relative to the mount point
        admin.router.add_route(op.method, op.path, op.handler)
    return admin


def create_admin_site_app(
    gateway: Gateway, token: str, watcher: ConfigWatcher | None = None
) -> web.Application:
    """The application of the admin listener: ``/admin/...``, its own ``/openapi.json``,
    and the operator console at ``/console/`` (``/`` redirects there); ``watcher`` tells
    the console which configuration is active and when it was loaded."""
    app = web.Application(
        middlewares=[middlewares.request_id, middlewares.errors],
        client_max_size=MAX_BODY_BYTES,
    )
    app[GATEWAY] = gateway
    app[openapi.OPENAPI_DOCUMENT] = openapi.document([ADMIN], title="Agent gateway admin API")
    app.router.add_get("/openapi.json", openapi.serve_document)
    app.add_subapp(ADMIN_PREFIX, create_admin_app(token))
    if watcher is not None:
        app[WATCHER] = watcher
    app.add_subapp(console.PREFIX, console.create_console_app(gateway, digest(token)))
    app.router.add_get("/", _to_console)
    return app


async def _to_console(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(f"{console.PREFIX}/")


async def start_admin_site(
    gateway: Gateway,
    config: GatewayConfig,
    *,
    reuse_port: bool = False,
    watcher: ConfigWatcher | None = None,
) -> web.AppRunner | None:
    """Serve the admin API on ``admin.listen``; ``None`` when it is not configured
    (no token: no admin API at all; no ``listen``: it is mounted on the public app).

    ``reuse_port`` lets several worker processes share the port (each answers from the
    shared store; ``/admin/runtime`` then describes whichever worker answers).
    ``await runner.cleanup()`` at shutdown stops it.
    """
    listen = config.admin.listen
    if not config.admin.token_env or listen is None:
        return None
    runner = GatewayRunner(
        create_admin_site_app(gateway, admin_token(config), watcher),
        handler_cancellation=True,
        access_log=None,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, listen.host, listen.port, reuse_port=reuse_port)
        await start_site(site, listen.host, listen.port, " (admin API)")
    except BaseException:
        await runner.cleanup()
        raise
    log.info(
        "admin API listening on http://%s:%d/admin, its console at /console/",
        listen.host,
        listen.port,
    )
    return runner
