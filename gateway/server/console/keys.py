"""The console's keys: the list (server-side search, sort and pages, with the create
form) and a key's page (balance, held, limits, spend by hour, day and agent, ledger
with the CLI's filters and exports, audit trail, and every action the CLI has).

Actions are forms that the console's script sends, after a confirmation, to the
admin API's own handlers mounted under ``/console/api/admin`` (``app``): the same
checks, the same store calls, the same audit, with the console as the actor.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from aiohttp import web

from gateway.errors import GatewayError
from gateway.server.admin.request import gateway_of, ledger_query
from gateway.server.console.charts import bars, shares
from gateway.server.console.html import Html, credits, join, page, render, table, when
from gateway.server.console.session import session_of
from gateway.store import aggregates, catalogue, ledger_export
from gateway.store.catalogue import SORTS
from gateway.store.records import LIMIT_FIELDS, ApiKey

PAGE = 50
API = "/console/api/admin"


def status(key: ApiKey, now: float) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and now >= key.expires_at:
        return "expired"
    return "active"


def _limits_inputs(key: ApiKey | None, prefix: str = "") -> Html:
    return join(
        render(
            '<label>{name} <input name="{prefix}{name}" type="number" min="0" step="1" '
            'data-type="int" value="{value}"></label>',
            name=name,
            prefix=prefix,
            value=getattr(key.limits, name) if key else "",
        )
        for name in LIMIT_FIELDS
    )


CREATE_FORM = (
    '<details class="panel"><summary>Create a key</summary>'
    '<form class="action" data-method="POST" data-url="{api}/keys" data-then="secret" '
    'data-confirm="Create this key?">'
    '<label>name <input name="name" required maxlength="1000"></label>'
    '<label>balance (credits) <input name="balance" type="number" min="0" step="1" '
    'data-type="int"></label>'
    '<label>agents (comma-separated; empty: every agent) <input name="agents" data-type="list">'
    "</label>"
    '<label>expires in days <input name="expires_in_seconds" type="number" min="0" step="any" '
    'data-type="days"></label>'
    '<label>note <input name="note" maxlength="1000"></label>'
    "<fieldset><legend>limits (0: none)</legend>{limits}</fieldset>"
    '<button type="submit">Create</button><output class="result"></output></form></details>'
)


def _page_link(label: str, query: str, sort: str, offset: int) -> Html:
    href = "/console/keys?" + urlencode({"q": query, "sort": sort, "offset": offset})
    return render('<a href="{href}" rel="nofollow">{label}</a>', href=href, label=label)


async def keys_page(request: web.Request) -> web.Response:
    query = request.query.get("q", "")[:200]
    asked = request.query.get("sort", "newest")
    sort: catalogue.Sort = next((s for s in SORTS if s == asked), "newest")
    try:
        offset = max(0, int(request.query.get("offset", "0")))
    except ValueError:
        offset = 0
    now = time.time()
    found = await catalogue.page(
        gateway_of(request).store.redis, query=query, sort=sort, offset=offset, limit=PAGE, now=now
    )
    rows = [
        (
            render('<a href="/console/keys/{id}">{name}</a>', id=r.key.id, name=r.key.name),
            render("<code>{id}</code>", id=r.key.id),
            status(r.key, now),
            credits(r.balance),
            credits(r.held),
            credits(r.spent_today),
            ", ".join(r.key.agents) or "every agent",
            when(r.key.created_at),
        )
        for r in found.rows
    ]
    options = join(
        render('<option value="{s}"{sel}>{s}</option>', s=s,
               sel=Html(" selected") if s == sort else Html(""))
        for s in SORTS
    )  # fmt: skip
    links = []
    if offset > 0:
        links.append(_page_link("← previous", query, sort, max(0, offset - PAGE)))
    if offset + PAGE < found.total:
        links.append(_page_link("next →", query, sort, offset + PAGE))
    shown = (
        f"{offset + 1:,} to {offset + len(found.rows):,} of {found.total:,}" if found.rows else ""
    )
    body = render(
        '<form class="search" method="get" action="/console/keys">'
        '<input type="search" name="q" value="{q}" placeholder="name or id contains…" '
        'aria-label="search keys"><select name="sort" aria-label="sort">{options}</select>'
        '<button type="submit">Search</button></form>'
        '<p class="count">{shown}{capped}</p>{table}<p class="pages">{links}</p>{create}',
        q=query,
        options=options,
        shown=shown,
        capped=" (search stopped at 10,000 matches)" if found.capped else "",
        table=table(
            ("name", "id", "status", "balance", "held", "spent today", "agents", "created"),
            rows,
            empty="no keys match",
        ),
        links=join(links, " "),
        create=Html(CREATE_FORM.format(api=API, limits=_limits_inputs(None, "limits."))),
    )
    html = page("Keys", body, csrf=session_of(request).csrf, current="/console/keys")
    return web.Response(text=html, content_type="text/html")


def _actions(key: ApiKey) -> Html:
    base = f"{API}/keys/{key.id}"
    if key.revoked_at is not None:
        return Html('<p class="note">Revoked: no action changes it now.</p>')
    return render(
        '<section class="actions">'
        '<form class="action panel" data-method="POST" data-url="{base}/credit" '
        'data-confirm="Move the balance of {name} by these credits?" data-then="reload">'
        "<h3>Credit or debit</h3>"
        '<label>credits (negative: remove) <input name="credits" type="number" step="1" '
        'data-type="int" required></label>'
        '<label>note <input name="note" maxlength="1000"></label>'
        '<button type="submit">Apply</button><output class="result"></output></form>'
        '<form class="action panel" data-method="PUT" data-url="{base}/limits" '
        'data-confirm="Replace the limits of {name}?" data-then="reload"><h3>Limits</h3>'
        '{limits}<button type="submit">Set limits</button><output class="result"></output></form>'
        '<form class="action panel" data-method="POST" data-url="{base}/rotate" '
        'data-confirm="Give {name} a new secret?" data-then="secret"><h3>Rotate</h3>'
        '<label>grace for the old secret (seconds) <input name="grace_seconds" type="number" '
        'min="0" step="1" value="86400" data-type="int"></label>'
        '<button type="submit">Rotate</button><output class="result"></output></form>'
        '<form class="action panel danger" data-method="POST" data-url="{base}/revoke" '
        'data-confirm="Revoke {name}? Every secret it has is refused from now on." '
        'data-then="reload"><h3>Revoke</h3>'
        '<button type="submit">Revoke</button><output class="result"></output></form>'
        "</section>",
        base=base,
        name=key.name,
        limits=_limits_inputs(key),
    )


async def key_page(request: web.Request) -> web.Response:
    store = gateway_of(request).store
    csrf = session_of(request).csrf
    try:
        key = await store.get_key(request.match_info["id"])
        query = ledger_query(request.query)
    except GatewayError as exc:
        body = render('<p class="error">{message}</p>', message=exc.message)
        html = page("Key", body, csrf=csrf, current="/console/keys")
        return web.Response(text=html, content_type="text/html", status=exc.status)
    now = time.time()
    balance, held = await store.balance(key.id), await store.held(key.id)
    days = await aggregates.read_key(store.redis, key, "day", 30, now=now)
    hours = await aggregates.read_key(store.redis, key, "hour", 48, now=now)
    entries = await ledger_export.key_latest(store, key, query, most=min(query.limit or 50, 500))
    audit = [e for e in await store.audit_log(limit=10_000) if e.key_id == key.id][:50]
    facts = table(
        ("", ""),
        [
            ("id", render("<code>{id}</code>", id=key.id)),
            ("status", status(key, now)),
            ("team", render('<a href="/console/teams/{t}">{t}</a> (spends its balance; its '
                            "own below is unused meanwhile)", t=key.team)
             if key.team else "none"),
            ("balance", credits(balance)),
            ("held by requests in flight", credits(held)),
            ("available", credits(balance - held)),
            ("agents", ", ".join(key.agents) or "every agent"),
            ("created", when(key.created_at)),
            ("expires", when(key.expires_at)),
            ("rotated", when(key.rotated_at)),
            ("secret starts", key.hint),
            ("note", key.note),
            *((f"limit: {n}", f"{getattr(key.limits, n):,}" if getattr(key.limits, n) else "none")
              for n in LIMIT_FIELDS),
        ],
    )  # fmt: skip
    agents = table(
        ("agent", "credits", "requests", "errors", "input tokens", "output tokens"),
        [
            (a, credits(t.credits), f"{t.requests:,}", f"{t.errors:,}", f"{t.input_tokens:,}",
             f"{t.output_tokens:,}")
            for a, t in days.by_agent
        ],
        empty="no usage in 30 days",
    )  # fmt: skip
    ledger_rows = [
        (when(e.at), e.kind, e.agent, credits(e.amount), credits(e.balance),
         f"{e.usage.input_tokens:,}/{e.usage.output_tokens:,}" if e.usage else "",
         e.note, render("<code>{r}</code>", r=e.request_id) if e.request_id else "")
        for e in entries
    ]  # fmt: skip
    params = {k: v for k, v in request.query.items() if k in ("agent", "kind", "since", "until")}
    exports = join(
        (render('<a href="{href}" download>{fmt}</a>', fmt=fmt.upper(),
                href=f"{API}/keys/{key.id}/ledger?" + urlencode({**params, "format": fmt}))
         for fmt in ledger_export.FORMATS),
        " · ",
    )  # fmt: skip
    audit_rows = [(when(a.at), a.actor, a.action, str(dict(a.details))) for a in audit]
    kinds = join(
        render('<option value="{k}"{sel}>{label}</option>', k=k, label=k or "any kind",
               sel=Html(" selected") if k == (query.kind or "") else Html(""))
        for k in ("", *ledger_export.KINDS)
    )  # fmt: skip
    body = render(
        '<section class="split"><div>{facts}</div><div>{agents_share}</div></section>'
        "{actions}"
        '<section class="charts">{by_day}{by_hour}</section>'
        "<h2>By agent (30 days)</h2>{agents}"
        "<h2>Ledger</h2>"
        '<form class="filters" method="get" action="/console/keys/{id}">'
        '<label>agent <input name="agent" value="{agent}"></label>'
        '<label>kind <select name="kind">{kinds}</select></label>'
        '<label>since <input name="since" value="{since}" placeholder="2026-01-31"></label>'
        '<label>until <input name="until" value="{until}"></label>'
        '<label>limit <input name="limit" type="number" min="1" value="{limit}"></label>'
        '<button type="submit">Filter</button></form>'
        '<p class="exports">The latest {shown} matching (at most 500 here); export all '
        "that match: {exports}</p>{ledger}"
        "<h2>Audit trail</h2>"
        '<p class="note">This key\'s actions among the latest 10,000 of the audit log '
        "(<code>gateway audit</code> has them all).</p>{audit}",
        facts=facts,
        agents_share=shares([(a, t.credits) for a, t in days.by_agent[:10]]),
        actions=_actions(key),
        by_day=bars([(b.label[5:], b.totals.credits) for b in days.buckets], title="Spend by day"),
        by_hour=bars([(b.label[11:16], b.totals.credits) for b in hours.buckets],
                     title="Spend by hour (48 h)"),
        agents=agents,
        id=key.id,
        agent=request.query.get("agent", ""),
        kinds=kinds,
        since=request.query.get("since", ""),
        until=request.query.get("until", ""),
        limit=request.query.get("limit", ""),
        exports=exports,
        shown=len(entries),
        ledger=table(("at", "kind", "agent", "amount", "balance", "tokens in/out", "note",
                      "request"), ledger_rows, empty="no entries match"),
        audit=table(("at", "who", "action", "details"), audit_rows, empty="no audited actions"),
    )  # fmt: skip
    title = f"Key {key.name}"
    html = page(title, body, csrf=csrf, current="/console/keys")
    return web.Response(text=html, content_type="text/html")
