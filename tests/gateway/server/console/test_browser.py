"""The console in a real browser: Debian's Chromium, headless, driven by Playwright.

One browser and one gateway (in a thread of its own, with its own event loop) for the
module; each test has a fresh browser context (no cookies) and fails on any
JavaScript error or failed console message. Skipped only when Chromium is not
installed (``make test`` installs Debian's ``chromium`` when it runs as root).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import pytest
from redis import asyncio as aioredis

from gateway.store import catalogue
from tests.gateway.server.console.support import ENV, TOKEN, Console, serve_console

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
if not os.path.exists(CHROMIUM):
    pytest.skip(
        "Debian's chromium is not installed (make test installs it as root)",
        allow_module_level=True,
    )
playwright = pytest.importorskip("playwright.sync_api")

T = TypeVar("T")
MANY = 600  # keys besides the ones a test looks for


@dataclass
class Served:
    """The console, served by an event loop in a thread of its own."""

    console: Console
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    @property
    def url(self) -> str:
        return self.console.url

    def spend(self, secret: str, agent: str = "echo") -> None:
        async def one() -> None:
            async with aiohttp.ClientSession() as http:
                await self.console.spend(http, secret, agent)

        self.run(one())


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="console", daemon=True)
    thread.start()
    access_log = logging.getLogger("gateway.requests")
    level = access_log.level
    access_log.setLevel(logging.INFO)  # the Live page reads the access log
    with pytest.MonkeyPatch.context() as env:
        env.setenv(ENV, TOKEN)

        async def start() -> Console:
            redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
            await redis.flushdb()
            await redis.aclose()
            console = await serve_console(redis_url, tmp_path_factory.mktemp("console"))
            store = console.gw.store
            for i in range(MANY):
                await store.create_key(f"team-{i:04d}", balance=1000)
            return console

        console = asyncio.run_coroutine_threadsafe(start(), loop).result(120)
        try:
            yield Served(console, loop)
        finally:
            asyncio.run_coroutine_threadsafe(console.stop(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
            access_log.setLevel(level)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page of a fresh context; the test fails on any JavaScript error."""
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    page.on("dialog", lambda dialog: dialog.accept())  # every confirmation: yes
    page.set_default_timeout(10_000)
    page.expected_statuses = set()  # a test that expects a refusal names its status here
    yield page
    context.close()
    expected = {f"status of {status} " for status in page.expected_statuses}
    unexpected = [e for e in errors if not any(status in e for status in expected)]
    assert not unexpected, unexpected


def sign_in(page: Any, served: Served) -> None:
    page.goto(served.url + "/console/")
    assert page.url.endswith("/console/login")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(served.url + "/console/")


def test_nothing_is_shown_before_sign_in(page: Any, served: Served) -> None:
    for path in ("/", "/console/keys", "/console/live"):
        page.goto(served.url + path)
        assert page.url == served.url + "/console/login"
        assert "team-" not in page.content() and page.locator("nav").count() == 0
    page.expected_statuses.add(401)  # the wrong token's answer
    page.fill("input[name=token]", "not the token")
    page.click("button[type=submit]")
    assert "not the admin token" in page.content()
    assert page.context.cookies() == []


def test_the_headers_a_reviewer_checks(page: Any, served: Served) -> None:
    response = page.goto(served.url + "/console/login")
    headers = response.headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    sign_in(page, served)
    cookie = page.context.cookies()[0]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and TOKEN not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # not readable by script
    assert page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)") == "{}{}"


def test_find_a_key_among_many_create_credit_and_revoke(page: Any, served: Served) -> None:
    needle, _ = served.run(served.console.gw.store.create_key("needle-in-haystack", balance=500))
    sign_in(page, served)
    page.click("nav >> text=Keys")
    assert f"of {MANY + 1:,}" in page.inner_text("p.count") or "of" in page.inner_text("p.count")
    page.fill("input[name=q]", "NEEDLE")
    page.click("form.search button")
    rows = page.locator("table tbody tr")
    assert rows.count() == 1
    rows.locator("a").click()
    page.wait_for_url(f"**/console/keys/{needle.id}")

    credit = page.locator("form[data-url$='/credit']")
    credit.locator("input[name=credits]").fill("2500")
    credit.locator("input[name=note]").fill("top-up <b>by browser</b>")
    credit.locator("button").click()
    page.wait_for_load_state("load")
    page.wait_for_selector("text=top-up <b>by browser</b>")  # the note, as text
    assert served.run(served.console.gw.store.balance(needle.id)) == 3000
    audit = served.run(served.console.gw.store.audit_log(limit=1))[0]
    assert audit.action == "key.credit" and audit.actor.startswith("console:")

    page.click("nav >> text=Keys")
    create = page.locator("form[data-url$='/keys']")
    page.click("details.panel summary")
    create.locator("input[name=name]").fill("made-in-browser")
    create.locator("input[name=balance]").fill("7000")
    create.locator("input[name=agents]").fill("echo, helper")
    create.locator("input[name='limits.rpm']").fill("60")
    create.locator("button").click()
    secret = create.locator("code.secret")
    secret.wait_for()
    assert secret.inner_text().startswith("sk-gw-")
    create.locator("output a").click()
    page.wait_for_selector("h1:has-text('made-in-browser')")
    made = served.run(catalogue.page(served.console.gw.store.redis, query="made-in-browser")).rows[
        0
    ]
    assert made.balance == 7000 and made.key.agents == ("echo", "helper")
    assert made.key.limits.rpm == 60

    page.locator("form[data-url$='/revoke'] button").click()
    page.wait_for_selector("text=Revoked: no action changes it now.")
    assert served.run(served.console.gw.store.get_key(made.key.id)).revoked_at is not None


def test_a_refused_action_says_why(page: Any, served: Served) -> None:
    key, _ = served.run(served.console.gw.store.create_key("small", balance=10))
    sign_in(page, served)
    page.expected_statuses.add(400)
    page.goto(served.url + f"/console/keys/{key.id}")
    credit = page.locator("form[data-url$='/credit']")
    credit.locator("input[name=credits]").fill(str(2 * 10**15))  # beyond what a balance holds
    credit.locator("button").click()
    refusal = credit.locator("output.error")
    refusal.wait_for()
    assert "credits" in refusal.inner_text()
    assert served.run(served.console.gw.store.balance(key.id)) == 10


def test_charts_show_what_was_just_spent(page: Any, served: Served) -> None:
    key, secret = served.run(served.console.gw.store.create_key("spender", balance=100_000))
    served.spend(secret)
    served.spend(secret, "helper")
    spent = 100_000 - served.run(served.console.gw.store.balance(key.id))
    assert spent > 0
    sign_in(page, served)
    today = page.locator("figure:has-text('Spend by day') rect.bar").last
    assert int(today.get_attribute("data-value")) >= spent
    assert page.locator(".shares:has-text('helper')").count() == 1
    assert "spender" in page.inner_text("section.split")  # among the top keys
    page.goto(served.url + f"/console/keys/{key.id}")
    today = page.locator("figure:has-text('Spend by day') rect.bar").last
    assert int(today.get_attribute("data-value")) == spent
    hour = page.locator("figure:has-text('Spend by hour') rect.bar").last
    assert int(hour.get_attribute("data-value")) == spent
    assert page.locator("table:has-text('input tokens') tbody tr").count() == 2  # two agents


def test_a_name_full_of_html_is_text_and_never_runs(page: Any, served: Served) -> None:
    hostile = '<img src=x onerror="window.__owned=1"><script>window.__owned=2</script>'
    key, secret = served.run(
        served.console.gw.store.create_key(hostile, balance=50_000, note="<i>note</i>")
    )
    served.spend(secret)
    sign_in(page, served)
    for path in ("/console/", "/console/keys?q=img", f"/console/keys/{key.id}", "/console/live"):
        page.goto(served.url + path)
        page.wait_for_load_state("load")
        assert page.evaluate("window.__owned") is None, path
        assert page.locator("img").count() == 0, path
    page.goto(served.url + f"/console/keys/{key.id}")
    assert hostile in page.inner_text("h1") and "<i>note</i>" in page.inner_text("main")


def test_a_change_without_the_csrf_token_is_refused(page: Any, served: Served) -> None:
    sign_in(page, served)
    page.expected_statuses.add(403)
    status = page.evaluate(
        """async () => (await fetch('/console/api/admin/keys', {method: 'POST',
            headers: {'Content-Type': 'application/json'}, body: '{"name": "csrf"}'})).status"""
    )
    assert status == 403
    assert not served.run(catalogue.page(served.console.gw.store.redis, query="csrf")).rows


def test_live_updates_without_a_reload(page: Any, served: Served) -> None:
    key, secret = served.run(served.console.gw.store.create_key("live-one", balance=50_000))
    sign_in(page, served)
    page.click("nav >> text=Live")
    page.wait_for_selector("#live-status:has-text('Updated')")
    served.spend(secret)
    page.wait_for_selector(f"#recent td:text-is('{key.id}')", timeout=8000)
    assert re.search(r"\bcompleted\b", page.inner_text("#recent"))


def test_routes_show_the_active_configuration(page: Any, served: Served) -> None:
    sign_in(page, served)
    page.click("nav >> text=Routes")
    text = page.inner_text("main")
    config = served.console.gw.gateway.config
    assert len(config.sha256) == 64 and config.sha256 in text
    assert "helper" in text and "closed" in text and "gateway.yaml" in text
    assert re.search(r"loaded\s+\d{4}-\d\d-\d\d", text)


def test_the_console_is_not_on_the_public_listener(page: Any, served: Served) -> None:
    page.expected_statuses.add(404)
    response = page.goto(served.console.gw.url + "/console/")
    assert response.status == 404


def test_sign_out(page: Any, served: Served) -> None:
    sign_in(page, served)
    page.click("nav button:has-text('Sign out')")
    page.wait_for_url("**/console/login")
    page.goto(served.url + "/console/keys")
    assert page.url.endswith("/console/login")
