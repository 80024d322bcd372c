"""start_site: a busy address is one clear error, naming it."""

from __future__ import annotations

import socket

import pytest
from aiohttp import web

from gateway.server.listen import PortUnavailable, start_site


async def test_a_busy_port_is_port_unavailable() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runner = web.AppRunner(web.Application())
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", port)
            with pytest.raises(PortUnavailable) as caught:
                await start_site(site, "127.0.0.1", port, " (admin API)")
        finally:
            await runner.cleanup()
    assert str(caught.value) == (
        f"cannot listen on 127.0.0.1:{port} (admin API): address already in use"
    )
