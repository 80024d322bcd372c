"""Every value the console writes is escaped unless it is markup the console made."""

from __future__ import annotations

from gateway.server.console.html import Html, credits, join, page, render, table, usd


def test_values_are_escaped_and_markup_is_not() -> None:
    hostile = "<img src=x onerror=alert(1)>\"'&"
    out = render('<td title="{v}">{v}</td>', v=hostile)
    assert "<img" not in out and "&lt;img src=x onerror=alert(1)&gt;&quot;&#x27;&amp;" in out
    assert render("<p>{inner}</p>", inner=Html("<b>ok</b>")) == "<p><b>ok</b></p>"
    assert join(["<i>", Html("<b>")]) == "&lt;i&gt;<b>"
    assert "{x}" in render("<p>{v}</p>", v="{x}")  # a value is never a template


def test_a_table_escapes_each_cell_and_says_when_empty() -> None:
    out = table(("<h>",), [("<c>",), (Html("<a href='/'>k</a>"),)])
    assert "&lt;h&gt;" in out and "&lt;c&gt;" in out and "<a href='/'>k</a>" in out
    assert "nothing" in table(("a",), [], empty="nothing")


def test_a_page_before_sign_in_has_no_navigation_nor_token() -> None:
    out = page("Sign in", Html("<form></form>"), csrf=None)
    assert "<nav>" not in out and "csrf-token" not in out
    signed = page("Keys", Html(""), csrf='tok"en', current="/console/keys")
    assert 'content="tok&quot;en"' in signed and 'aria-current="page">Keys' in signed
    assert '<script src="/console/static/console.js" defer></script>' in signed
    assert "<script>" not in signed and "style=" not in signed


def test_credits_show_usd() -> None:
    assert ">1,500,000<" in credits(1_500_000) and usd(1_500_000) == "$1.50"
    assert usd(42) == "$0.0000"
