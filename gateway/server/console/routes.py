"""The console's routes and backends (the active configuration, circuit breakers,
recent upstream errors and latency) and the Live page (requests in flight and the
latest access log lines, refreshed by polling ``/console/api/live``)."""

from __future__ import annotations

import time

from aiohttp import web

from gateway.server.admin.request import gateway_of
from gateway.server.body import json_response
from gateway.server.console.html import join, page, render, table, when
from gateway.server.console.live import FIELDS, Recent, backend_stats, in_flight
from gateway.server.console.session import session_of
from gateway.server.keys import WATCHER

RECENT = web.AppKey("console_recent", Recent)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f} ms"


async def routes_page(request: web.Request) -> web.Response:
    gateway = gateway_of(request)
    config = gateway.config
    watcher = request.config_dict.get(WATCHER)
    status = watcher.status() if watcher is not None else {"sha256": config.sha256}
    problems = [str(p) for p in status.get("problems", []) or []]  # type: ignore[attr-defined]
    stats = backend_stats(list(request.app[RECENT].lines))
    breakers = gateway.generation.breakers
    route_rows = [
        (
            agent,
            join((render("<code>{b}</code>", b=t.backend) for t in route.targets), ", "),
            route.model or ", ".join(t.model or "" for t in route.targets if t.model) or "—",
            f"{route.pricing.input} / {route.pricing.output}",
            route.max_output_tokens or "—",
            ", ".join(f"{k}={v}" for k, v in vars_of(route.limits).items() if v) or "none",
        )
        for agent, route in sorted(config.routes.items())
    ]
    backend_rows = []
    for name, spec in sorted(config.backends.items()):
        s = stats.get(name)
        breaker = breakers.get(name)
        state = breaker.state if breaker is not None else "—"
        backend_rows.append(
            (
                render("<code>{n}</code>", n=name),
                spec.type,
                render('<span class="state {s}">{s}</span>', s=state),
                f"{s.requests:,}" if s else "0",
                f"{s.errors:,}" if s else "0",
                _ms(s.p50_ms if s else None),
                _ms(s.p95_ms if s else None),
                f"{s.last_error} at {when(s.last_error_at)}" if s and s.last_error else "—",
            )
        )
    body = render(
        "<h2>Active configuration</h2>{config}"
        "<h2>Routes</h2>{routes}"
        "<h2>Backends</h2>"
        '<p class="note">Requests, errors and latency over the last {n} access log lines of '
        "this process; breaker state as this process sees it.</p>{backends}",
        config=table(
            ("", ""),
            [
                ("source", str(status.get("source") or config.source)),
                ("sha256", render("<code>{d}</code>", d=str(status.get("sha256") or ""))),
                ("loaded", when(status.get("loaded_at"))),  # type: ignore[arg-type]
                ("reloads", str(status.get("reloads", "—"))),
                ("refused newer file", "; ".join(problems) or "no"),
            ],
        ),
        routes=table(
            (
                "agent",
                "backends",
                "upstream model",
                "price in / out (USD per 1M)",
                "output cap",
                "limits",
            ),
            route_rows,
            empty="no routes",
        ),
        n=len(request.app[RECENT].lines),
        backends=table(
            ("backend", "type", "breaker", "requests", "errors", "p50", "p95", "last error"),
            backend_rows,
            empty="no backends",
        ),
    )
    html = page("Routes and backends", body, csrf=session_of(request).csrf,
                current="/console/routes")  # fmt: skip
    return web.Response(text=html, content_type="text/html")


def vars_of(limits: object) -> dict[str, object]:
    return {name: getattr(limits, name) for name in getattr(limits, "__dataclass_fields__", {})}


async def live_page(request: web.Request) -> web.Response:
    head = join(render("<th>{f}</th>", f=f) for f in ("at", *FIELDS))
    body = render(
        '<p class="note" id="live-status">Refreshes every 2 seconds.</p>'
        "<h2>In flight (this process)</h2>"
        '<table id="in-flight"><thead><tr><th>request_id</th><th>key_id</th><th>agent</th>'
        "<th>backend</th><th>held</th><th>seconds</th><th>output_tokens</th></tr></thead>"
        "<tbody></tbody></table>"
        "<h2>Latest requests</h2>"
        '<table id="recent"><thead><tr>{head}</tr></thead><tbody></tbody></table>',
        head=head,
    )
    html = page("Live", body, csrf=session_of(request).csrf, current="/console/live")
    return web.Response(text=html, content_type="text/html")


async def live_data(request: web.Request) -> web.Response:
    """In flight and the latest access log lines (newest first), as JSON."""
    recent = list(request.app[RECENT].lines)[::-1]
    return json_response(
        {"at": time.time(), "in_flight": in_flight(gateway_of(request)), "recent": recent}
    )
