"""Charts are SVG the server writes: a bar per point, labels escaped, no style."""

from __future__ import annotations

import re

from gateway.server.console.charts import HEIGHT, PAD, bars, shares
from gateway.server.console.html import Html


def test_bars_scale_to_the_largest_and_escape_labels() -> None:
    out = bars([("<d1>", 10), ("d2", 0), ("d3", 40)], title="Spend <by> day")
    heights = [float(h) for h in re.findall(r'class="bar"[^>]* height="([\d.]+)"', out)]
    assert heights == [(HEIGHT - 2 * PAD) / 4, 0.0, HEIGHT - 2 * PAD]
    assert "&lt;d1&gt;: 10 credits" in out and "Spend &lt;by&gt; day" in out
    assert 'data-value="40"' in out and "style" not in out and "(max 40 credits)" in out


def test_nothing_to_show() -> None:
    assert "(max 0 credits)" in bars([("a", 0)], title="t")
    assert "nothing yet" in shares([])


def test_shares_keep_markup_labels_and_escape_text() -> None:
    out = shares([(Html('<a href="/k">k</a>'), 3), ("<agent>", 6)])
    assert '<a href="/k">k</a>' in out and "&lt;agent&gt;" in out and 'width="50.0"' in out
