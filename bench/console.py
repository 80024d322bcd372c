"""``python -m bench.console``: the console with 10,000 keys and 1,000,000 ledger entries.

Against a scratch Redis (GATEWAY_TEST_REDIS_URL, which ``tests/with-redis.sh`` starts;
the database is emptied first), one gateway and its admin listener in this process:

1. Seeds ``--keys`` keys through the store (as ``gateway keys create`` makes them, so
   the key catalogue indexes them) and ``--entries`` ledger entries spread over them and
   over 30 days (pipelined ``XADD``s of the fields settlement writes), with the
   aggregates those entries make: each key's day and hour hashes of today and the
   gateway's day hashes and top-key sets of 30 days, the names and fields that
   ``settle.lua`` and ``gateway_totals`` write. Then a few real requests, settled.
2. Each page, signed in, ``--runs`` times over HTTP: the median time to the whole
   answer and its bytes (the answer is the whole page: its charts are inline SVG,
   its one script and one stylesheet are the same for every page, counted once).
3. In Debian's Chromium (Playwright), each page's first contentful paint (median of 5).
4. With ``--screenshots DIR``: a PNG of each page into DIR (docs/console/).

Prints a table (the numbers docs/console.md reports). Not a test: nothing is asserted
beyond the pages answering 200.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway.config import load_config
from gateway.server import admin
from gateway.server.app import create_app
from gateway.server.connection import GatewayRunner
from gateway.server.keys import GATEWAY, WATCHER
from gateway.store import schema
from gateway.store.aggregates import bucket_name
from gateway.store.holds import DAY_AGGREGATE_TTL
from gateway.store.records import KeyLimits

STATIC = resources.files("gateway.server.console").joinpath("static")
TOKEN = "bench-console-admin-token-0123456789"
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
AGENTS = ("research-agent", "support-bot", "coder", "summarizer")
CONFIG = """
admin:
  token_env: GATEWAY_BENCH_ADMIN_TOKEN
  listen: {port: ADMIN_PORT}
backends:
  echo: {type: echo}
filters:
  - type: request_log
routes:
""" + "".join(
    f"  {a}:\n    backend: echo\n    pricing: {{input: 3, output: 15}}\n"
    "    max_output_tokens: 200\n"
    for a in AGENTS
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def seed(app: web.Application, keys: int, entries: int) -> list[str]:
    """``keys`` keys, ``entries`` ledger entries over them; the key ids."""
    gateway = app[GATEWAY]
    store, redis = gateway.store, gateway.store.redis
    rng = random.Random(7)
    started = time.perf_counter()
    ids: list[str] = []
    for start in range(0, keys, 200):
        made = await asyncio.gather(
            *(
                store.create_key(f"{rng.choice(('team', 'svc', 'user'))}-{i:05d}",
                                 balance=50_000_000, agents=())
                for i in range(start, min(keys, start + 200))
            )
        )  # fmt: skip
        ids += [key.id for key, _ in made]
    print(f"  {keys:,} keys in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    started = time.perf_counter()
    now = time.time()
    per_day: dict[str, dict[str, int]] = {}
    top: dict[str, dict[str, int]] = {}
    per_key_today: dict[str, int] = {}
    per_hour: dict[str, dict[str, int]] = {}
    history: dict[tuple[str, str], dict[str, int]] = {}  # the first 100 keys' days
    today = bucket_name("day", int(now))
    batch = 2000
    for start in range(0, entries, batch):
        pipe: Any = redis.pipeline(transaction=False)
        for n in range(start, min(entries, start + batch)):
            key_id = ids[n % len(ids)]
            at = now - rng.random() * 30 * 86400
            agent = AGENTS[n % len(AGENTS)]
            tokens_in, tokens_out = rng.randint(50, 4000), rng.randint(10, 800)
            credits = 3 * tokens_in + 15 * tokens_out
            day = bucket_name("day", int(at))
            fields = {
                "kind": "usage", "request_id": f"req_{n:07d}", "agent": agent,
                "backend": "echo", "started_at": repr(at - 1), "at": repr(at),
                "estimated": "0", "input_tokens": str(tokens_in),
                "output_tokens": str(tokens_out), "cached_input_tokens": "0",
                "cache_write_tokens": "0", "reasoning_tokens": "0",
                "amount": str(-credits), "held": str(credits), "balance": "0",
            }  # fmt: skip
            pipe.xadd(schema.ledger(key_id), fields)
            totals = per_day.setdefault(day, {})
            for name, value in (
                ("credits", credits),
                ("requests", 1),
                ("input_tokens", tokens_in),
                ("output_tokens", tokens_out),
            ):
                totals[f"{name}|{agent}"] = totals.get(f"{name}|{agent}", 0) + value
            if now - at < 48 * 3600:
                hour = per_hour.setdefault(bucket_name("hour", int(at)), {})
                hour["credits"] = hour.get("credits", 0) + credits
                hour["requests"] = hour.get("requests", 0) + 1
            if n % len(ids) < 100:
                mine = history.setdefault((key_id, day), {})
                for name, value in ((f"credits|{agent}", credits), (f"requests|{agent}", 1)):
                    mine[name] = mine.get(name, 0) + value
            spenders = top.setdefault(day, {})
            spenders[key_id] = spenders.get(key_id, 0) + credits
            if day == today:
                per_key_today[key_id] = per_key_today.get(key_id, 0) + credits
        await pipe.execute()
    pipe = redis.pipeline(transaction=False)
    for day, totals in per_day.items():
        pipe.hset(schema.global_day(day), mapping=totals)
        pipe.expire(schema.global_day(day), DAY_AGGREGATE_TTL)
        pipe.zadd(schema.global_top_keys(day), top[day])
    for hour, totals in per_hour.items():
        pipe.hset(schema.global_hour(hour), mapping=totals)
    for key_id, credits in per_key_today.items():
        pipe.hset(schema.aggregate_day(key_id, today), mapping={f"credits|{AGENTS[0]}": credits})
        pipe.incrby(schema.spend_day(key_id, today), credits)
    for (key_id, day), totals in history.items():
        pipe.hset(schema.aggregate_day(key_id, day), mapping=totals)
    await pipe.execute()
    for key_id in ids[:: max(1, len(ids) // 25)]:  # some keys close to a daily budget
        budget = int(per_key_today.get(key_id, 0) * rng.uniform(1.0, 1.2)) + 1
        await store.set_limits(key_id, KeyLimits(rpm=600, daily_budget=budget))
    print(f"  {entries:,} ledger entries in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return ids


async def traffic(public: str, secrets: list[str]) -> None:
    async with aiohttp.ClientSession() as http:
        for i, secret in enumerate(secrets * 4):
            question = {"role": "user", "content": "How much did we spend? " * 5}
            body = {"model": AGENTS[i % len(AGENTS)], "messages": [question]}
            headers = {"Authorization": f"Bearer {secret}"}
            async with http.post(public + "/v1/chat/completions", json=body, headers=headers) as r:
                await r.read()


async def measure(url: str, paths: dict[str, str], runs: int) -> dict[str, tuple[float, int]]:
    jar = aiohttp.CookieJar(unsafe=True)
    out = {}
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.post(url + "/console/login", data={"token": TOKEN}) as r:
            assert r.status == 200, r.status
        for name, path in paths.items():
            times, size = [], 0
            for _ in range(runs):
                started = time.perf_counter()
                async with http.get(url + path) as r:
                    body = await r.read()
                    assert r.status == 200, (path, r.status)
                times.append(time.perf_counter() - started)
                size = len(body)
            out[name] = (statistics.median(times) * 1000, size)
    return out


def browser(url: str, paths: dict[str, str], shots: Path | None) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    paints = {}
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = chromium.new_page(viewport={"width": 1360, "height": 900})
        if shots is not None:
            page.goto(url + "/console/login")
            page.screenshot(path=str(shots / "login.png"))
        page.goto(url + "/console/login")
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(url + "/console/")
        for name, path in paths.items():
            found = []
            for _ in range(5):
                page.goto(url + path)
                fcp = page.evaluate(
                    "() => new Promise(done => new PerformanceObserver((list) => {"
                    " const e = list.getEntriesByName('first-contentful-paint')[0];"
                    " if (e) done(e.startTime); }).observe({type: 'paint', buffered: true}))"
                )
                found.append(float(fcp))
            paints[name] = statistics.median(found)
            if shots is not None:
                if name == "live":
                    page.wait_for_selector("#recent tbody tr")
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        chromium.close()
    return paints


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--screenshots", type=Path, help="write a PNG of each page here")
    args = parser.parse_args(argv)
    redis_url = os.environ.get("GATEWAY_TEST_REDIS_URL")
    if not redis_url:
        parser.error("run it through tests/with-redis.sh (a scratch Redis it may empty)")
    os.environ["GATEWAY_BENCH_ADMIN_TOKEN"] = TOKEN
    port = free_port()
    os.environ["GATEWAY_REDIS_URL"] = redis_url
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as file:
        file.write(CONFIG.replace("ADMIN_PORT", str(port)))
    config = load_config(file.name)
    app = create_app(config)
    runner = GatewayRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    public_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", public_port).start()
    await app[GATEWAY].store.redis.flushdb()
    admin_runner = await admin.start_admin_site(app[GATEWAY], config, watcher=app[WATCHER])
    assert admin_runner is not None
    url = f"http://127.0.0.1:{port}"
    try:
        ids = await seed(app, args.keys, args.entries)
        store = app[GATEWAY].store
        secrets = []
        for name in ("alice <ops>", "batch-reports", "support-team"):
            _, secret = await store.create_key(name, balance=20_000_000)
            secrets.append(secret)
        logging.getLogger("gateway.requests").setLevel(logging.INFO)
        await traffic(f"http://127.0.0.1:{public_port}", secrets)
        await app[GATEWAY].tasks.drain()
        key_id = ids[42]
        paths = {
            "overview": "/console/",
            "keys": "/console/keys",
            "keys-search": "/console/keys?q=team-0042&sort=name",
            "keys-page-100": "/console/keys?offset=5000",
            "key": f"/console/keys/{key_id}",
            "routes": "/console/routes",
            "live": "/console/live",
        }
        served = await measure(url, paths, args.runs)
        if args.screenshots is not None:
            args.screenshots.mkdir(parents=True, exist_ok=True)
        shots = {k: v for k, v in paths.items() if k not in ("keys-search", "keys-page-100")}
        loop = asyncio.get_running_loop()
        paints = await loop.run_in_executor(
            None, browser, url, {**paths} if args.screenshots is None else shots,
            args.screenshots,
        )  # fmt: skip
        print(f"\n{args.keys:,} keys, {args.entries:,} ledger entries; median of {args.runs}")
        print(f"{'page':<16}{'answer (ms)':>12}{'bytes':>10}{'first paint (ms)':>18}")
        for name, (ms, size) in served.items():
            paint = paints.get(name)
            shown = f"{paint:.0f}" if paint is not None else "-"
            print(f"{name:<16}{ms:>12.1f}{size:>10,}{shown:>18}")
        assets = sum(len(STATIC.joinpath(f).read_bytes()) for f in ("console.js", "console.css"))
        print(f"(+ console.js and console.css, about {assets:,} bytes, once)")
    finally:
        await admin_runner.cleanup()
        await runner.cleanup()
        os.unlink(file.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
