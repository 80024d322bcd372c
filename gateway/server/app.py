"""The aiohttp application: routes, middlewares, and the resources it owns."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from gateway.config import EMBEDDED, GatewayConfig
from gateway.errors import ConfigError, Problem
from gateway.pipeline import Gateway
from gateway.reload import ConfigWatcher
from gateway.server import admin, chat, messages, middlewares, misc, responses
from gateway.server.keys import GATEWAY, WATCHER
from gateway.store import Store, connect
from gateway.tasks import BackgroundTasks

log = logging.getLogger(__name__)

OnReady = Callable[[Gateway], Awaitable[None]]

# LibreChat serves its Agents API under this prefix; clients pointed at it keep working.
PREFIXES = ("/v1", "/api/agents/v1")
SHUTDOWN_DRAIN_SECONDS = 30.0


def admin_token(config: GatewayConfig) -> str:
    """The admin token from ``admin.token_env``; refuse to start on an empty one."""
    name = config.admin.token_env or ""
    token = os.environ.get(name, "")
    if not token.strip():
        problem = Problem("admin.token_env", f"environment variable {name} is empty", config.source)
        raise ConfigError([problem])
    return token.strip()  # a trailing newline (a token read from a file) is not part of it


def create_app(
    config: GatewayConfig, *, on_ready: OnReady | None = None, watch: bool = False
) -> web.Application:
    """The application; ``watch`` reloads ``config.source`` when it changes."""
    app = web.Application(
        middlewares=[middlewares.request_id, middlewares.errors],
        client_max_size=config.limits.max_body_bytes,
    )
    for prefix in PREFIXES:
        app.router.add_post(f"{prefix}/chat/completions", chat.chat_completions)
        app.router.add_get(f"{prefix}/models", misc.models)
        app.router.add_post(f"{prefix}/responses", responses.create_response)
        app.router.add_get(f"{prefix}/responses/{{response_id}}", responses.get_response)
        app.router.add_delete(f"{prefix}/responses/{{response_id}}", responses.delete_response)
        app.router.add_get(
            f"{prefix}/responses/{{response_id}}/input_items", responses.list_input_items
        )
        app.router.add_post(f"{prefix}/messages", messages.create_message)
        app.router.add_post(f"{prefix}/messages/count_tokens", messages.count_tokens)
    # Anthropic's error shape for everything at or under .../messages (401, 413, 404s too).
    shapes: dict[str, middlewares.ErrorShape] = {
        f"{prefix}/messages": middlewares.anthropic_shape for prefix in PREFIXES
    }
    app[middlewares.ERROR_SHAPES] = shapes
    app.router.add_get("/healthz", misc.healthz)
    app.router.add_get("/readyz", misc.readyz)
    if config.admin.token_env:
        # The admin API exists only with a token; without one, /admin/... is a 404.
        app.add_subapp("/admin", admin.create_admin_app(admin_token(config)))

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
        loops = [asyncio.create_task(gateway.meter.keep_leases(), name="leases")]
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
            await gateway.aclose()
            await store.aclose()

    app.cleanup_ctx.append(lifecycle)
    return app
