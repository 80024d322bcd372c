"""``gateway serve``: run the gateway until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from aiohttp import web

from gateway.config import EMBEDDED, GatewayConfig, load_config
from gateway.pipeline import Gateway
from gateway.server.app import create_app

log = logging.getLogger("gateway")

DEMO_BALANCE = 10_000_000  # 10 USD of credits


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    serve = commands.add_parser("serve", parents=[common], help="run the gateway")
    serve.add_argument("--host", help="override listen.host")
    serve.add_argument("--port", type=int, help="override listen.port")
    serve.add_argument("--log-level", default="INFO")
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    config = load_config(args.config)
    host = args.host or config.listen.host
    port = config.listen.port if args.port is None else args.port
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(config, host, port))
    else:
        uvloop.run(serve(config, host, port))
    return 0


async def serve(config: GatewayConfig, host: str, port: int) -> None:
    demo: list[str] = []

    async def on_ready(gateway: Gateway) -> None:
        if config.redis.url == EMBEDDED and config.routes:
            _, secret = await gateway.store.create_key("demo", balance=DEMO_BALANCE)
            demo.append(secret)

    runner = web.AppRunner(
        create_app(config, on_ready=on_ready), handler_cancellation=True, access_log=None
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=True)
    await site.start()
    log.info("listening on http://%s:%d (%d routes)", host, port, len(config.routes))
    if demo:
        _print_demo(demo[0], host, port, next(iter(config.routes)))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: finishing requests and settlements")
    await runner.cleanup()


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
