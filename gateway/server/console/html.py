"""HTML built from templates that escape every value: the console's only way to write
markup, so a key name, a note or an agent id is always shown as text, never run.

``render(template, **values)`` fills ``{name}`` fields; a value is escaped with
``html.escape`` (quotes included) unless it is ``Html``, which only ``render``,
``join`` and ``Html(...)`` of a literal make. There is no other way in.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable


class Html(str):
    """Markup that is safe to insert as is (made by ``render`` or ``join``)."""

    __slots__ = ()


def escape(value: object) -> Html:
    return value if isinstance(value, Html) else Html(html.escape(str(value), quote=True))


def render(template: str, **values: object) -> Html:
    """``template`` (a literal written here) with each ``{name}`` filled, escaped."""
    return Html(template.format(**{name: escape(value) for name, value in values.items()}))


def join(parts: Iterable[Html], separator: str = "") -> Html:
    return Html(separator.join(escape(p) for p in parts))


def credits(amount: int) -> Html:
    """Credits with thousands separators, and what they are in USD."""
    return render(
        '<span class="credits" title="{usd}">{n}</span>', n=f"{amount:,}", usd=usd(amount)
    )


def usd(amount: int) -> str:
    return f"${amount / 1_000_000:,.2f}" if abs(amount) >= 10_000 else f"${amount / 1e6:,.4f}"


def when(at: float | None) -> str:
    if not at:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def table(headers: Iterable[str], rows: Iterable[Iterable[object]], *, empty: str = "none") -> Html:
    """A table; each cell escaped unless it is ``Html``."""
    headers = tuple(headers)
    head = join(render("<th>{h}</th>", h=h) for h in headers)
    body = [join(render("<td>{c}</td>", c=cell) for cell in row) for row in rows]
    if not body:
        return render('<p class="empty">{empty}</p>', empty=empty)
    lines = join(render("<tr>{cells}</tr>", cells=cells) for cells in body)
    if not any(headers):  # a list of facts: no header row
        return render('<table class="facts"><tbody>{lines}</tbody></table>', lines=lines)
    return render("<table><thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>",
                  head=head, lines=lines)  # fmt: skip


NAV = (
    ("/console/", "Overview"),
    ("/console/keys", "Keys"),
    ("/console/teams", "Teams"),
    ("/console/routes", "Routes"),
    ("/console/live", "Live"),
)


def page(title: str, body: Html, *, csrf: str | None, current: str = "") -> Html:
    """The whole document: nothing but ``body`` before sign-in (``csrf`` None)."""
    nav = Html("")
    if csrf is not None:
        links = join(
            render('<a href="{href}"{cur}>{label}</a>', href=href, label=label,
                   cur=Html(' aria-current="page"') if href == current else Html(""))
            for href, label in NAV
        )  # fmt: skip
        nav = render(
            '<nav><span class="brand">Agent gateway</span>{links}'
            '<form method="post" action="/console/logout" class="logout">'
            '<input type="hidden" name="csrf" value="{csrf}">'
            '<button type="submit">Sign out</button></form></nav>',
            links=links,
            csrf=csrf,
        )
    meta = render('<meta name="csrf-token" content="{csrf}">', csrf=csrf) if csrf else Html("")
    return render(
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">{meta}'
        "<title>{title} · gateway console</title>"
        '<link rel="stylesheet" href="/console/static/console.css">'
        '<script src="/console/static/console.js" defer></script>'
        "</head><body>{nav}<main><h1>{title}</h1>{body}</main></body></html>\n",
        meta=meta,
        title=title,
        nav=nav,
        body=body,
    )
