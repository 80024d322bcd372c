"""``gateway serve``: run the gateway until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import resource
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from gateway import logs, redaction
from gateway.cli.output import CommandError
from gateway.cli.workers import Supervisor, worker_command
from gateway.config import GatewayConfig, load_config
from gateway.pipeline import Gateway
from gateway.server.app import create_app
from gateway.server.connection import GatewayRunner
from gateway.server.keys import GATEWAY, WATCHER
from gateway.server.listen import PortUnavailable, start_site
from gateway.server.runner_limits import runner_kwargs
from gateway.store.settings import EMBEDDED

log = logging.getLogger("gateway")

DEMO_BALANCE = 10_000_000  # 10 USD of credits
GC_YOUNG_THRESHOLD = 50_000  # allocations between collections of the youngest generation


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    serve = commands.add_parser("serve", parents=[common], help="run the gateway")
    serve.add_argument("--host", help="override listen.host")
    serve.add_argument("--port", type=int, help="override listen.port")
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default="auto",
        help="json lines, or text for people; auto: text on a terminal, else json",
    )
    serve.add_argument(
        "--workers", type=int, default=1, help="worker processes sharing the port (default 1)"
    )
    # Set by the supervisor for its workers only: a lone gateway owns its port, so
    # a second one started by mistake fails instead of taking half the requests.
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    # The supervisor's pid, set for its workers: a worker drains once it is gone.
    serve.add_argument("--supervisor", type=int, help=argparse.SUPPRESS)
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    logs.setup(args.log_level, args.log_format, sys.stderr)
    config = load_config(args.config)
    logs.protect(redaction.configured_secrets(config))
    host = args.host or config.listen.host
    port = config.listen.port if args.port is None else args.port
    if args.workers > 1:
        if config.redis.url == EMBEDDED:
            raise CommandError("--workers needs a shared Redis: the embedded store is per process")
        if port == 0:
            raise CommandError("--workers needs a fixed port for the workers to share")
        command = worker_command(args.config, host, port, args.log_level, args.log_format)
        return asyncio.run(Supervisor(command, args.workers).run())
    if args.workers < 1:
        raise CommandError("--workers must be at least 1")
    try:
        _run_loop(serve(config, host, port, reuse_port=args.reuse_port, supervisor=args.supervisor))
    except PortUnavailable as exc:
        raise CommandError(str(exc)) from None
    return 0


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


async def serve(
    config: GatewayConfig,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    supervisor: int | None = None,
) -> None:
    """Serve until a signal. ``reuse_port`` (SO_REUSEPORT) is for the workers of one
    supervisor; without it a port another process holds is a start-up error. A worker
    given its ``supervisor``'s pid drains once that process is no longer its parent."""
    demo: list[str] = []

    async def on_ready(gateway: Gateway) -> None:
        if config.redis.url == EMBEDDED and config.routes:
            _, secret = await gateway.store.create_key("demo", balance=DEMO_BALANCE)
            demo.append(secret)

    shutdown = config.shutdown
    runner = GatewayRunner(
        create_app(config, on_ready=on_ready, watch=True),
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=shutdown.grace_period + 5,
        **runner_kwargs(config.limits),
    )
    await runner.setup()
    gateway, watcher = runner.app[GATEWAY], runner.app[WATCHER]
    # Workers share the admin port as they share the public one. It starts first, so
    # that an admin listener that cannot start (port taken, empty token) stops the
    # start-up before the public listener takes any request.
    admin_runner: web.AppRunner | None = None
    try:
        if config.admin.token_env and config.admin.listen is not None:
            # Imported only when the admin listener is configured: the admin API's
            # modules and the console's are about 0.7 MB of idle RSS otherwise unused.
            from gateway.server import admin

            admin_runner = await admin.start_admin_site(
                gateway, config, reuse_port=reuse_port, watcher=watcher
            )
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port)
        await start_site(site, host, port)
    except BaseException:
        if admin_runner is not None:
            await admin_runner.cleanup()
        await runner.cleanup()
        raise
    log.info("listening on http://%s:%d (%d routes)", host, port, len(config.routes))
    _open_files(config)
    _tune_gc()
    if demo:
        _print_demo(demo[0], host, port, next(iter(config.routes)))

    signals = asyncio.Queue[int]()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, signals.put_nowait, sig)
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, watcher.poke)
    orphaned = None if supervisor is None else asyncio.create_task(_watch(supervisor, signals))
    await signals.get()
    if orphaned is not None:
        orphaned.cancel()
    if admin_runner is not None:
        await admin_runner.cleanup()
    await _drain(gateway, site, shutdown.drain_delay, shutdown.grace_period, signals)
    await runner.cleanup()  # waits for handlers, then for every settlement
    log.info("stopped")


SUPERVISOR_CHECK = 1.0  # seconds between a worker's checks that its supervisor lives


async def _watch(supervisor: int, signals: asyncio.Queue[int]) -> None:
    """A worker whose supervisor died (SIGKILL, the OOM killer) drains as on SIGTERM:
    no orphan keeps serving the port with nobody to restart, reload or stop it. The
    pid comes from the supervisor itself, so a death during start-up counts too."""
    while os.getppid() == supervisor:  # noqa: ASYNC110 - no event says a parent died
        await asyncio.sleep(SUPERVISOR_CHECK)
    log.warning("the supervisor (pid %d) is gone: draining", supervisor)
    signals.put_nowait(signal.SIGTERM)


def _open_files(config: GatewayConfig) -> None:
    """Lift this process's limit on open files to the most it may have, and say if
    the configured limits could need more: each request in flight holds two sockets
    (its client's and its upstream's), plus the Redis pool's."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    needed = 2 * config.limits.max_connections + config.redis.max_connections + 64
    if needed > hard:
        log.warning(
            "limits.max_connections (%d) needs about %d open files, more than this process "
            "may have (%d): lower it, or raise the limit (ulimit -n)",
            config.limits.max_connections,
            needed,
            hard,
        )


def _tune_gc() -> None:
    """Keep the garbage collector's pauses short under load.

    What start-up built (modules, config, pools) lives as long as the process:
    ``gc.freeze`` takes it out of every future collection. A request allocates a
    few hundred container objects, so the youngest generation is collected every
    ~100 requests rather than every few.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


async def _drain(
    gateway: Gateway,
    site: web.TCPSite,
    delay: float,
    grace: float,
    signals: asyncio.Queue[int],
) -> None:
    """Stop taking work and let requests in flight finish; a second signal hurries it."""
    gateway.draining = True  # /readyz answers 503 from now on
    log.info("draining: %d requests in flight", gateway.active_calls)
    hurry = asyncio.ensure_future(signals.get())
    try:
        await asyncio.wait({hurry}, timeout=delay)  # load balancers see /readyz first
        await site.stop()  # no new connections
        deadline = asyncio.get_running_loop().time() + grace
        while gateway.active_calls and not hurry.done():
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.wait({hurry}, timeout=0.05)
    finally:
        hurry.cancel()
    if gateway.active_calls:
        log.warning("ending %d requests still in flight", gateway.active_calls)
        gateway.interrupts.interrupt_all()


def _print_demo(secret: str, host: str, port: int, agent: str) -> None:
    """The demo key goes to stdout for the person at the terminal, never to the log."""
    where = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    body = f'{{"model":"{agent}","messages":[{{"role":"user","content":"Hello, gateway!"}}]}}'
    print(
        f"\nDemo key (embedded store, {DEMO_BALANCE} credits): {secret}\n"
        "Try it:\n"
        f"  curl http://{where}:{port}/v1/chat/completions \\\n"
        f'    -H "Authorization: Bearer {secret}" \\\n'
        '    -H "Content-Type: application/json" \\\n'
        f"    -d '{body}'\n",
        flush=True,
    )
