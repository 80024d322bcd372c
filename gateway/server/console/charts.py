"""Charts as server-rendered SVG: no library, no script, nothing fetched.

Every label goes through ``html.render``, so a bucket or agent name is text. Sizes
are SVG attributes, not CSS, so the console's Content-Security-Policy (no inline
style) holds.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.server.console.html import Html, join, render

WIDTH, HEIGHT, PAD = 720, 180, 24


def bars(
    points: Sequence[tuple[str, int]], *, title: str, unit: str = "credits", marks: int = 6
) -> Html:
    """A bar chart of ``(label, value)``, oldest first; each bar titled with its value."""
    top = max((v for _, v in points), default=0) or 1
    n = max(len(points), 1)
    step = (WIDTH - 2 * PAD) / n
    width = max(step * 0.8, 1)
    shapes = []
    for i, (label, value) in enumerate(points):
        h = (HEIGHT - 2 * PAD) * max(value, 0) / top
        x = PAD + i * step
        shapes.append(
            render(
                '<rect class="bar" x="{x}" y="{y}" width="{w}" height="{h}" data-value="{v}">'
                "<title>{label}: {fmt} {unit}</title></rect>",
                x=f"{x:.1f}",
                y=f"{HEIGHT - PAD - h:.1f}",
                w=f"{width:.1f}",
                h=f"{h:.1f}",
                v=value,
                label=label,
                fmt=f"{value:,}",
                unit=unit,
            )
        )
    ticks = []
    every = max(1, n // marks)
    for i in range(0, len(points), every):
        ticks.append(
            render(
                '<text class="tick" x="{x}" y="{y}">{label}</text>',
                x=f"{PAD + i * step:.1f}",
                y=HEIGHT - 6,
                label=points[i][0],
            )
        )
    return render(
        '<figure class="chart"><figcaption>{title} <span class="max">(max {top} {unit})'
        "</span></figcaption>"
        '<svg viewBox="0 0 {w} {h}" role="img" aria-label="{title}" '
        'xmlns="http://www.w3.org/2000/svg">'
        '<line class="axis" x1="{pad}" y1="{base}" x2="{right}" y2="{base}"/>'
        "{shapes}{ticks}</svg></figure>",
        title=title,
        top=f"{top:,}" if any(v for _, v in points) else "0",
        unit=unit,
        w=WIDTH,
        h=HEIGHT,
        pad=PAD,
        base=HEIGHT - PAD,
        right=WIDTH - PAD,
        shapes=join(shapes),
        ticks=join(ticks),
    )


def shares(rows: Sequence[tuple[Html | str, int]], *, unit: str = "credits") -> Html:
    """Horizontal bars: each row's label, a bar in proportion to the largest, its value."""
    top = max((v for _, v in rows), default=0) or 1
    lines = []
    for label, value in rows:
        lines.append(
            render(
                '<div class="share"><span class="label">{label}</span>'
                '<svg viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true">'
                '<rect class="bar" x="0" y="0" width="{w}" height="8"/></svg>'
                '<span class="value">{fmt} {unit}</span></div>',
                label=label,
                w=f"{100 * max(value, 0) / top:.1f}",
                fmt=f"{value:,}",
                unit=unit,
            )
        )
    if not lines:
        return Html('<p class="empty">nothing yet</p>')
    return render('<div class="shares">{lines}</div>', lines=join(lines))
