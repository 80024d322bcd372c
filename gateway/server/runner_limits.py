"""Server-level limits: the keyword arguments of ``web.AppRunner`` from ``limits:``.

aiohttp enforces these before a request reaches the application, so their
refusals are a plain-text ``400 Bad Request: <reason>`` (not a dialect's JSON
error; ``gateway.server.connection`` words it, never quoting the client's
bytes), and the connection is closed:

- ``max_header_bytes``: the longest request line and header line
  (``max_line_size``) and header value (``max_field_size``);
- ``max_headers``: the number of header lines;
- ``keepalive_timeout``: an idle keep-alive connection is closed after it; since
  aiohttp arms the same timer when a connection opens and after each response,
  it is also the time a client has to send a complete request head (a
  "slowloris" client trickling its headers is cut off after it).

The request body's own limits (size, read time, depth, counts) are the
application's; see ``gateway.server.body`` and ``gateway.dialects.request_limits``.
"""

from __future__ import annotations

from typing import Any

from gateway.settings import Limits


def runner_kwargs(limits: Limits) -> dict[str, Any]:
    """``web.AppRunner(app, **runner_kwargs(config.limits), ...)``."""
    return {
        "max_line_size": limits.max_header_bytes,
        "max_field_size": limits.max_header_bytes,
        "max_headers": limits.max_headers,
        "keepalive_timeout": limits.keepalive_timeout,
    }
