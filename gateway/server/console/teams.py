"""The console's teams: the list (balance, held, keys, spend this month) and a team's
page (its balance and limits, spend by day from its aggregates, each of its keys with
what it spent, from the team's latest ledger entries, and its threshold events)."""

from __future__ import annotations

import time
from collections import Counter

from aiohttp import web

from gateway.errors import GatewayError
from gateway.server.admin.request import gateway_of
from gateway.server.console.charts import bars
from gateway.server.console.html import credits, page, render, table, when
from gateway.server.console.session import session_of
from gateway.store import aggregates
from gateway.store.alerts import Alerts
from gateway.store.records import LIMIT_FIELDS
from gateway.store.teams import Teams

LEDGER_SCAN = 10_000  # a team page sums its keys' spend over this many latest entries


async def teams_page(request: web.Request) -> web.Response:
    store = gateway_of(request).store
    teams = Teams(store)
    now = time.time()
    rows = []
    for team in await teams.all():
        balance, held = await store.balance(team.id), await store.held(team.id)
        month = await teams.spent_this_month(team.id, now)
        rows.append(
            (
                render('<a href="/console/teams/{id}">{name}</a>', id=team.id, name=team.name),
                render("<code>{id}</code>", id=team.id),
                credits(balance),
                credits(held),
                f"{len(await teams.members(team.id)):,}",
                credits(month),
            )
        )
    body = render(
        '<p class="note">Create teams, credit them and move keys with <code>gateway teams'
        "</code>, <code>gateway keys move</code> or the admin API.</p>{teams}",
        teams=table(
            ("team", "id", "balance", "held", "keys", "spent this month"),
            rows,
            empty="no teams",
        ),
    )
    html = page("Teams", body, csrf=session_of(request).csrf, current="/console/teams")
    return web.Response(text=html, content_type="text/html")


async def team_page(request: web.Request) -> web.Response:
    store = gateway_of(request).store
    teams = Teams(store)
    csrf = session_of(request).csrf
    try:
        team = await teams.get(request.match_info["id"])
    except GatewayError as exc:
        body = render('<p class="error">{message}</p>', message=exc.message)
        html = page("Team", body, csrf=csrf, current="/console/teams")
        return web.Response(text=html, content_type="text/html", status=exc.status)
    now = time.time()
    balance, held = await store.balance(team.id), await store.held(team.id)
    days = await aggregates.read_team(store.redis, team.id, "day", 30, now=now)
    spent: Counter[str] = Counter()
    requests: Counter[str] = Counter()
    for entry in await store.ledger(team.id, latest=LEDGER_SCAN):
        if entry.kind == "usage":
            spent[entry.key_id] -= entry.amount
            requests[entry.key_id] += 1
    members = await teams.members(team.id)
    keys = []
    for key_id in sorted(members, key=lambda k: -spent[k]):
        key = await store.get_key(key_id)
        keys.append(
            (
                render('<a href="/console/keys/{id}">{name}</a>', id=key.id, name=key.name),
                render("<code>{id}</code>", id=key.id),
                credits(spent[key_id]),
                f"{requests[key_id]:,}",
                ", ".join(f"{n}={getattr(key.limits, n):,}" for n in LIMIT_FIELDS
                          if getattr(key.limits, n)) or "none",
            )
        )  # fmt: skip
    ours = {team.id, *members}
    events = [e for e in await Alerts(store.redis).latest(1_000) if e.account in ours][:20]
    event_rows = [
        (when(e.at), e.whose, render("<code>{a}</code>", a=e.account), e.kind,
         f"{e.fraction:.0%}", f"{e.value:,} of {e.limit:,}")
        for e in events
    ]  # fmt: skip
    facts = table(
        ("", ""),
        [
            ("id", render("<code>{id}</code>", id=team.id)),
            ("balance", credits(balance)),
            ("held by requests in flight", credits(held)),
            ("available", credits(balance - held)),
            ("created", when(team.created_at)),
            ("note", team.note),
            *((f"limit: {n}", f"{getattr(team.limits, n):,}" if getattr(team.limits, n) else "none")
              for n in LIMIT_FIELDS),
        ],
    )  # fmt: skip
    body = render(
        "{facts}"
        '<section class="charts">{by_day}</section>'
        "<h2>Keys</h2>"
        '<p class="note">Spend and requests over the team\'s latest {scan} ledger entries '
        "(<code>gateway usage {id}</code> has them all).</p>{keys}"
        "<h2>Threshold events</h2>"
        '<p class="note">The team\'s and its keys\' among the latest 1,000 '
        "(<code>alerts.thresholds</code> in gateway.yaml).</p>{events}",
        facts=facts,
        by_day=bars([(b.label[5:], b.totals.credits) for b in days.buckets], title="Spend by day"),
        scan=f"{LEDGER_SCAN:,}",
        id=team.id,
        keys=table(("key", "id", "spent", "requests", "own limits"), keys, empty="no keys"),
        events=table(("at", "whose", "account", "kind", "fraction", "spent"), event_rows,
                     empty="no threshold events"),
    )  # fmt: skip
    html = page(f"Team {team.name}", body, csrf=csrf, current="/console/teams")
    return web.Response(text=html, content_type="text/html")
