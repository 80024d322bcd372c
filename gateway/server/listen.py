"""Starting a listener, with a clear error when its address is taken."""

from __future__ import annotations

import errno

from aiohttp import web


class PortUnavailable(Exception):
    """A listener could not bind its address; the message names ``host:port`` and why."""


async def start_site(site: web.TCPSite, host: str, port: int, what: str = "") -> None:
    """``site.start()``; a bind failure is ``PortUnavailable`` (no traceback for a busy port)."""
    try:
        await site.start()
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise PortUnavailable(f"cannot listen on {host}:{port}{what}: {reason or exc}") from None
