"""The aiohttp application: routes, middlewares, and the resources it owns."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import AbstractRoute

from gateway.config import GatewayConfig
from gateway.pipeline import Gateway
from gateway.reload import ConfigWatcher
from gateway.server import (
    a2a,
    api,
    credentials,
    middlewares,
    misc,
    openapi,
    routes,
    tracing,
)
from gateway.server.keys import GATEWAY, WATCHER
from gateway.store import Store, connect
from gateway.store.settings import EMBEDDED
from gateway.tasks import BackgroundTasks

log = logging.getLogger(__name__)

OnReady = Callable[[Gateway], Awaitable[None]]

SHUTDOWN_DRAIN_SECONDS = 30.0


def create_app(
    config: GatewayConfig,
    *,
    on_ready: OnReady | None = None,
    watch: bool = False,
    span_exporter: Any = None,
) -> web.Application:
    """The application; ``watch`` reloads ``config.source`` when it changes.

    ``span_exporter`` receives the trace spans (tests); else ``tracing`` decides.
    """
    spans = tracing.tracer(config.tracing, span_exporter)
    key_rules: credentials.KeyRules = {}  # filled as the routes are registered
    route_dialects: dict[AbstractRoute, str] = {}  # likewise
    in_app_admin = bool(config.admin.token_env) and config.admin.listen is None
    chain: list[Middleware] = []
    wrap: Callable[[Handler], Handler] | None = None
    if spans is None:  # the five below as one (a frame per request instead of five)
        front = middlewares.front(config.limits.max_connections, key_rules, route_dialects)
        if in_app_admin:  # the admin sub-application's requests go through it too
            chain = [front]
        else:  # around each route's handler: no aiohttp middleware (see middlewares.wrap)
            wrap = functools.partial(middlewares.wrap, front)
    else:
        chain = [
            middlewares.request_id,
            tracing.middleware(spans),
            middlewares.observe,
            middlewares.errors,
            middlewares.in_flight_limit(config.limits.max_connections),
            credentials.middleware(key_rules),
        ]
    app = web.Application(middlewares=chain, client_max_size=config.limits.max_body_bytes)
    tables = [*routes.PUBLIC]
    added = api.register(app.router, tables, key_rules, wrap)
    doors = {door.handler: door.dialect for door in routes.DOORS}
    route_dialects.update(
        (route, doors[op.handler].name) for route, op in added if op.handler in doors
    )
    # Each dialect's error shape for everything at or under its endpoints (401, 413, 404s
    # too): Anthropic's under .../messages; OpenAI's is every other path's anyway.
    shapes: dict[str, middlewares.ErrorShape] = {
        path: doors[op.handler].error
        for table in routes.PUBLIC
        for path, op in table.routes()
        if op.handler in doors
    }
    # A2A's endpoint has its agent in the path: its shape (a JSON-RPC error, with the HTTP
    # status) for everything under /a2a, and at the well-known card.
    shapes[a2a.PREFIX] = shapes[a2a.CARD_PATH] = a2a.DOOR.dialect.error
    app[middlewares.ERROR_SHAPES] = shapes
    # The requests that gateway.metrics measures, by the dialect they speak.
    app[middlewares.DIALECTS] = {handler: dialect.name for handler, dialect in doors.items()}
    if wrap is None:
        app.router.add_get("/metrics", misc.metrics)
    else:
        app.router.add_get("/metrics", wrap(misc.metrics))
        # Last: where no other route matches, the 404 or 405 (the router's own answers)
        # in the dialect's shape, with the request id, as the middleware gave them.
        app.router.add_route("*", "/{tail:.*}", wrap(middlewares.unrouted))
    if in_app_admin:
        # The admin API exists only with a token; without one, /admin/... is a 404. With
        # admin.listen it is served only by its own listener (admin.start_admin_site).
        # Imported here, once: the admin API's modules and the console's are about
        # 0.7 MB of idle RSS that a gateway without the admin API does not need.
        from gateway.server import admin

        app.add_subapp(admin.ADMIN_PREFIX, admin.create_admin_app(admin.admin_token(config)))
        tables.append(admin.ADMIN)
        if config.listen.host not in ("127.0.0.1", "::1", "localhost"):
            log.warning(
                "the admin API is served on the public listener %s: set admin.listen to "
                "serve it on a loopback listener of its own",
                config.listen.host,
            )
    app[openapi.OPENAPI_DOCUMENT] = openapi.document(tables)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if config.redis.url == EMBEDDED:
            log.warning(
                "store: EMBEDDED in-process store (redis.url: embedded). Keys, balances and the "
                "ledger live in this process only and vanish when it exits; for trying the "
                "gateway out, not for production. Set GATEWAY_REDIS_URL to use Redis."
            )
        store = Store(connect(config.redis))
        tasks = BackgroundTasks()
        gateway = Gateway.build(config, store, tasks)
        app[GATEWAY] = gateway
        watcher = app[WATCHER] = ConfigWatcher(gateway, config.source)
        if on_ready is not None:
            await on_ready(gateway)
        loops = [
            asyncio.create_task(gateway.meter.keep_leases(), name="leases"),
            asyncio.create_task(gateway.meter.deliveries.run(), name="alert webhook"),
            asyncio.create_task(gateway.holds.totals.run(), name="gateway totals"),
        ]
        if watch:
            loops.append(asyncio.create_task(watcher.run(), name="config watcher"))
        try:
            yield
        finally:
            for loop in loops:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
            await tasks.drain(SHUTDOWN_DRAIN_SECONDS)  # settlements finish before we go
            with contextlib.suppress(Exception):  # and what they added to the gateway's totals
                await gateway.holds.totals.flush()
            gateway.meter.outbox.abandon()  # logs each settlement Redis never took
            await gateway.aclose()
            await store.aclose()

    app.cleanup_ctx.append(lifecycle)
    return app
