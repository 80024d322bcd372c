"""The console's overview: spend today, this month and over 30 days, by day, hour,
agent and key; requests and errors; credits held in flight; keys near a limit."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from gateway.server.admin.request import gateway_of
from gateway.server.console.charts import bars, shares
from gateway.server.console.html import Html, credits, join, page, render, table, usd
from gateway.server.console.session import session_of
from gateway.store import aggregates, catalogue, schema
from gateway.store.store import guard


async def held_in_flight(redis: Any) -> tuple[int, int]:
    """Requests in flight (every process's leases) and the credits their keys hold."""
    async with guard():
        count = int(await redis.zcard(schema.LEASES))
        members = await redis.zrange(schema.LEASES, 0, 9999)
        keys = sorted({str(m).partition(" ")[0] for m in members})
        pipe = redis.pipeline(transaction=False)
        for key_id in keys:
            pipe.get(schema.held(key_id))
        held = sum(int(v or 0) for v in await pipe.execute())
    return count, held


async def names(redis: Any, ids: list[str]) -> dict[str, str]:
    async with guard():
        pipe = redis.pipeline(transaction=False)
        for key_id in ids:
            pipe.hget(schema.key_record(key_id), "name")
        found = await pipe.execute()
    return {key_id: name or "" for key_id, name in zip(ids, found, strict=True)}


def key_link(key_id: str, name: str) -> Html:
    return render('<a href="/console/keys/{id}">{name}</a> <code>{id}</code>', id=key_id, name=name)


def card(label: str, value: Html | str, detail: Html | str = "") -> Html:
    return render(
        '<div class="card"><div class="label">{label}</div><div class="value">{value}</div>'
        '<div class="detail">{detail}</div></div>',
        label=label,
        value=value,
        detail=detail,
    )


async def overview(request: web.Request) -> web.Response:
    gateway = gateway_of(request)
    redis = gateway.store.redis
    await gateway.holds.totals.flush()  # this process's settlements, counted now
    now = time.time()
    days = await aggregates.read(redis, None, "day", 30, now=now)
    day_of_month = time.gmtime(now).tm_mday
    month = await aggregates.read(redis, None, "day", day_of_month, now=now, top=0)
    hours = await aggregates.read(redis, None, "hour", 48, now=now, top=0)
    flying, held = await held_in_flight(redis)
    near = await catalogue.near_limits(redis, now=now)
    shown = {k for k, _ in days.top_keys} | {n.key_id for n in near[:20]}
    named = await names(redis, sorted(shown))
    today = days.buckets[-1].totals
    cards = join(
        [
            card(
                "Spend today",
                credits(today.credits),
                f"{usd(today.credits)} · {today.requests:,} requests",
            ),
            card(
                "This month",
                credits(month.total.credits),
                f"{usd(month.total.credits)} · {month.total.requests:,} requests",
            ),
            card(
                "Last 30 days",
                credits(days.total.credits),
                f"{usd(days.total.credits)} · {days.total.requests:,} requests",
            ),
            card("Errors today", f"{today.errors:,}", f"{days.total.errors:,} in 30 days"),
            card("Held in flight", credits(held), f"{flying:,} requests"),
        ]
    )
    by_day = bars([(b.label[5:], b.totals.credits) for b in days.buckets], title="Spend by day")
    by_hour = bars(
        [(b.label[11:16], b.totals.credits) for b in hours.buckets], title="Spend by hour (48 h)"
    )
    requests = bars(
        [(b.label[5:], b.totals.requests) for b in days.buckets],
        title="Requests by day",
        unit="requests",
    )
    errors = bars(
        [(b.label[5:], b.totals.errors) for b in days.buckets], title="Errors by day", unit="errors"
    )
    agents = shares([(a, t.credits) for a, t in days.by_agent[:15]])
    top = shares([(key_link(k, named.get(k, "")), c) for k, c in days.top_keys])
    near_rows = [
        (key_link(n.key_id, named.get(n.key_id, "")), n.limit, f"{n.used:,}", f"{n.of:,}",
         f"{100 * n.used / n.of:.0f}%")
        for n in near[:20]
    ]  # fmt: skip
    body = render(
        '<section class="cards">{cards}</section>'
        '<section class="charts">{by_day}{by_hour}{requests}{errors}</section>'
        '<section class="split"><div><h2>By agent (30 days)</h2>{agents}</div>'
        "<div><h2>Top keys (30 days)</h2>{top}</div></section>"
        "<section><h2>Keys near a limit or budget</h2>{near}</section>"
        '<p class="note">Gateway-wide totals are best-effort (see docs/metering.md); '
        "each key's page and ledger are exact.</p>",
        cards=cards,
        by_day=by_day,
        by_hour=by_hour,
        requests=requests,
        errors=errors,
        agents=agents,
        top=top,
        near=table(("key", "limit", "used", "of", "share"), near_rows, empty="none"),
    )
    html = page("Overview", body, csrf=session_of(request).csrf, current="/console/")
    return web.Response(text=html, content_type="text/html")
