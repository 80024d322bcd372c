"""A gateway with its admin listener (and so its console) on loopback, for the
console's tests: HTTP ones and the browser's."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.config import load_config
from gateway.server import admin
from gateway.server.app import create_app
from gateway.server.connection import GatewayRunner
from gateway.server.keys import GATEWAY, WATCHER
from tests.conftest import RunningGateway, StartGateway, free_port, make_config

TOKEN = "console-admin-token-0123456789abcdef"
ENV = "GW_TEST_CONSOLE_TOKEN"
CONFIG = """
admin:
  token_env: {env}
  listen: {{port: {port}}}
backends:
  echo: {{type: echo}}
filters:
  - type: request_log
routes:
  echo:
    backend: echo
    pricing: {{input: 3, output: 5}}
    max_output_tokens: 50
  helper:
    backend: echo
    pricing: {{input: 1, output: 1}}
    max_output_tokens: 50
"""


@dataclass
class Console:
    gw: RunningGateway  # the public listener
    url: str  # the admin listener, e.g. http://127.0.0.1:PORT
    runners: list[web.AppRunner]

    async def stop(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()

    async def sign_in(self, http: aiohttp.ClientSession) -> str:
        """Sign ``http`` in (its cookie jar keeps the session); the page's CSRF token."""
        async with http.post(self.url + "/console/login", data={"token": TOKEN}) as r:
            assert r.status == 200, await r.text()
            page = await r.text()
        found = re.search(r'name="csrf-token" content="([^"]+)"', page)
        assert found, page
        return found.group(1)

    async def spend(self, http: aiohttp.ClientSession, secret: str, agent: str = "echo") -> None:
        body = {"model": agent, "messages": [{"role": "user", "content": "one two three"}]}
        headers = {"Authorization": f"Bearer {secret}"}
        async with http.post(self.gw.url + "/v1/chat/completions", json=body, headers=headers) as r:
            assert r.status == 200, await r.text()
        await self.gw.gateway.tasks.drain()


async def start_console(start_gateway: StartGateway) -> Console:
    """A console whose public listener ``start_gateway`` started (and stops)."""
    port = free_port()
    text = CONFIG.format(env=ENV, port=port)
    gw = await start_gateway(text)
    runner = await admin.start_admin_site(gw.gateway, make_config(text))
    assert runner is not None
    return Console(gw, f"http://127.0.0.1:{port}", [runner])


async def serve_console(redis_url: str, folder: Path) -> Console:
    """A console and its gateway on loopback, its configuration a file in ``folder``
    (watched, as ``gateway serve`` does), started here; ``await console.stop()``."""
    port = free_port()
    path = folder / "gateway.yaml"
    path.write_text(CONFIG.format(env=ENV, port=port))
    config = load_config(path)
    config = replace(config, redis=replace(config.redis, url=redis_url))
    app = create_app(config)
    runner = GatewayRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    public = free_port()
    await web.TCPSite(runner, "127.0.0.1", public).start()
    gw = RunningGateway(f"http://127.0.0.1:{public}", app[GATEWAY])
    admin_runner = await admin.start_admin_site(gw.gateway, config, watcher=app[WATCHER])
    assert admin_runner is not None
    return Console(gw, f"http://127.0.0.1:{port}", [runner, admin_runner])
