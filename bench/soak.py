"""A soak test: mixed load on a real gateway process for a set time, watching for leaks.

``python -m bench.soak [--duration SECONDS] [--concurrency N]`` (``make soak``; the
duration defaults to ``$SOAK_DURATION`` or 300 s) needs a Redis in
``GATEWAY_TEST_REDIS_URL`` (``tests/with-redis.sh`` starts one). It starts the mock
upstream (``bench/mock_upstream.py``, with its fault models) and ``gateway serve``,
then runs, until the time is up: streamed and non-streamed calls, clients that
abort mid-stream, an upstream that fails, one that hangs past the gateway's
first-byte timeout and one that cuts its stream, invalid requests, requests without
a key, and keys created, used and revoked through the admin API.

Every few seconds it samples the gateway process: resident memory and open file
descriptors from ``/proc/PID``, asyncio tasks from the admin-only ``GET
/admin/runtime``. At the end it reports the outcomes by kind and the samples, and
fails (exit status 1) if

- an answer was unexpected (a 500, a wrong status for the scenario...);
- memory, descriptors or tasks grew without bound: the median of the last third of
  the samples above the first third's by more than a tolerance;
- a charge was lost: for every key, the sum of its ledger differs from its balance,
  its balance change differs from what the ledger says was charged and credited, or
  anything is still held once the load has stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from redis import asyncio as aioredis

from bench.procs import Processes, fd_count, free_port, start_mock, vm_rss
from gateway.store import Store

ADMIN_TOKEN = "soak-admin-token-" + "0123456789abcdef"
ADMIN_ENV = "SOAK_ADMIN_TOKEN"
KEY_BALANCE = 10**12
SAMPLE_EVERY = 2.0
# Growth allowed from the first third of the samples to the last (medians).
RSS_GROWTH = (1.25, 16 * 1024)  # factor and KiB
FD_GROWTH = 16
TASK_GROWTH = 64

# scenario -> the statuses it may get (``cut`` is a stream the client may see break).
EXPECTED: dict[str, set[int]] = {
    "chat": {200},
    "chat_stream": {200},
    "abort_stream": {200},
    "responses": {200},
    "messages_stream": {200},
    "upstream_error": {502, 503},
    "upstream_hang": {502, 503, 504},
    "upstream_cut": {200, 502},
    "invalid_json": {400},
    "invalid_fields": {400},
    "no_key": {401},
    "revoked_key": {401},
    "admin": {200, 201},
}
WEIGHTS = {
    "chat": 20,
    "chat_stream": 20,
    "abort_stream": 10,
    "responses": 8,
    "messages_stream": 8,
    "upstream_error": 5,
    "upstream_hang": 2,
    "upstream_cut": 5,
    "invalid_json": 5,
    "invalid_fields": 5,
    "no_key": 5,
}


def gateway_config(mock_port: int) -> str:
    base = f"http://127.0.0.1:{mock_port}/v1"
    pricing = "{input: 0.15, output: 0.6}"
    return f"""\
admin: {{token_env: {ADMIN_ENV}}}
auth: {{cache_ttl: 1}}
shutdown: {{drain_delay: 0, grace_period: 10}}
backends:
  mock: {{type: openai_chat, base_url: {base}, max_connections: 200}}
  faulty:
    type: openai_chat
    base_url: {base}
    timeouts: {{first_byte: 0.5, idle: 1}}
    circuit_breaker: {{failures: 1000000, cooldown: 1}}
routes:
  soak: {{backend: mock, model: mock, pricing: {pricing}}}
  soak-fail: {{backend: faulty, model: mock-fail, pricing: {pricing}}}
  soak-hang: {{backend: faulty, model: mock-hang, pricing: {pricing}}}
  soak-cut: {{backend: faulty, model: mock-cut, pricing: {pricing}}}
"""


@dataclass
class Sample:
    at: float
    rss_kib: int
    fds: int
    tasks: int


@dataclass
class Report:
    duration: float
    outcomes: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    samples: list[Sample] = field(default_factory=list)
    growth: dict[str, tuple[float, float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    keys_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        lines = [f"soak: {self.duration:.0f} s, {sum(self.outcomes.values())} requests"]
        lines.append("outcomes (scenario: status or error):")
        lines += [f"  {k}: {n}" for k, n in sorted(self.outcomes.items())]
        if self.unexpected:
            lines.append("unexpected:")
            lines += [f"  {k}: {n}" for k, n in sorted(self.unexpected.items())]
        lines.append("samples (s, RSS MiB, fds, tasks):")
        lines += [
            f"  {s.at:6.1f} {s.rss_kib / 1024:8.1f} {s.fds:5d} {s.tasks:5d}" for s in self.samples
        ]
        for name, (first, last) in self.growth.items():
            lines.append(f"{name}: first third {first:.0f}, last third {last:.0f}")
        lines.append(f"ledgers checked: {self.keys_checked} keys")
        lines += [f"PROBLEM: {p}" for p in self.problems] or ["OK"]
        return "\n".join(lines)


class Load:
    def __init__(self, url: str, http: aiohttp.ClientSession, seed: int) -> None:
        self.url = url
        self.http = http
        self.random = random.Random(seed)
        self.keys: list[str] = []  # secrets in use
        self.revoked: list[str] = []
        self.key_ids: list[str] = []
        self.report_outcomes: Counter[str] = Counter()
        self.unexpected: Counter[str] = Counter()

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def new_key(self) -> str:
        body = {"name": "soak", "balance": KEY_BALANCE}
        async with self.http.post(
            self.url + "/admin/keys", json=body, headers=self.admin_headers()
        ) as r:
            self.record("admin", r.status)
            made = await r.json()
        self.key_ids.append(made["id"])
        return str(made["key"])

    def record(self, scenario: str, outcome: int | str) -> None:
        kind = f"{scenario}: {outcome}"
        self.report_outcomes[kind] += 1
        expected = isinstance(outcome, int) and outcome in EXPECTED[scenario]
        broken_off = scenario in ("abort_stream", "upstream_cut") and outcome == "cut"
        if not expected and not broken_off:
            self.unexpected[kind] += 1

    async def worker(self, stop: asyncio.Event) -> None:
        names, weights = list(WEIGHTS), list(WEIGHTS.values())
        while not stop.is_set():
            scenario = self.random.choices(names, weights)[0]
            key = self.random.choice(self.keys)
            try:
                outcome: int | str = await asyncio.wait_for(self.one(scenario, key), 30)
            except TimeoutError:
                outcome = "timeout"
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
                outcome = "cut"
            except aiohttp.ClientError as exc:
                outcome = type(exc).__name__
            if outcome == 401 and key in self.revoked:
                scenario = "revoked_key"  # revoked while this request was on its way
            self.record(scenario, outcome)

    async def one(self, scenario: str, key: str) -> int | str:
        auth = {"Authorization": f"Bearer {key}"}
        words = " ".join(["soak"] * self.random.randint(1, 40))
        chat = {"messages": [{"role": "user", "content": words}], "max_tokens": 64}
        if scenario == "chat":
            return await self.post("/v1/chat/completions", {**chat, "model": "soak"}, auth)
        if scenario in ("chat_stream", "abort_stream", "upstream_cut"):
            model = "soak-cut" if scenario == "upstream_cut" else "soak"
            body = {**chat, "model": model, "stream": True}
            return await self.stream(body, auth, abort=scenario == "abort_stream")
        if scenario == "responses":
            body = {"model": "soak", "input": words, "max_output_tokens": 64}
            return await self.post("/v1/responses", body, auth)
        if scenario == "messages_stream":
            body = {**chat, "model": "soak", "stream": True}
            return await self.post("/v1/messages", body, auth)
        if scenario == "upstream_error":
            return await self.post("/v1/chat/completions", {**chat, "model": "soak-fail"}, auth)
        if scenario == "upstream_hang":
            return await self.post("/v1/chat/completions", {**chat, "model": "soak-hang"}, auth)
        if scenario == "invalid_json":
            async with self.http.post(
                self.url + "/v1/chat/completions", data=b'{"model": "soak", ', headers=auth
            ) as r:
                await r.read()
                return r.status
        if scenario == "invalid_fields":
            body = {"model": "soak", "messages": [{"role": 5}], "max_tokens": -1}
            return await self.post("/v1/chat/completions", body, auth)
        if scenario == "no_key":
            return await self.post("/v1/chat/completions", {**chat, "model": "soak"}, {})
        raise AssertionError(scenario)

    async def post(self, path: str, body: object, headers: dict[str, str]) -> int:
        async with self.http.post(self.url + path, json=body, headers=headers) as r:
            await r.read()
            return r.status

    async def stream(self, body: object, headers: dict[str, str], *, abort: bool) -> int:
        async with self.http.post(
            self.url + "/v1/chat/completions", json=body, headers=headers
        ) as r:
            if abort and r.status == 200:
                await r.content.readline()  # the first line, then hang up
                r.close()
                return r.status
            await r.read()
            return r.status

    async def revocations(self, stop: asyncio.Event, every: float) -> None:
        """Keys come and go: a new one joins, the oldest is revoked and then refused."""
        while not stop.is_set():
            await asyncio.sleep(every)
            self.keys.append(await self.new_key())
            if len(self.keys) > 3:
                old = self.keys.pop(0)
                old_id = self.key_ids[len(self.revoked)]
                self.revoked.append(old)  # before: a request on its way may see the 401
                async with self.http.post(
                    f"{self.url}/admin/keys/{old_id}/revoke", headers=self.admin_headers()
                ) as r:
                    self.record("admin", r.status)
                refused = await self.post(
                    "/v1/chat/completions",
                    {"model": "soak", "messages": [{"role": "user", "content": "x"}]},
                    {"Authorization": f"Bearer {old}"},
                )
                self.record("revoked_key", refused)


async def sample(url: str, http: aiohttp.ClientSession, pid: int, started: float) -> Sample:
    async with http.get(
        url + "/admin/runtime", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as r:
        tasks = int((await r.json())["asyncio_tasks"])
    return Sample(time.monotonic() - started, vm_rss(pid) or 0, fd_count(pid) or 0, tasks)


def growth(report: Report) -> None:
    samples = report.samples
    if len(samples) < 6:
        report.problems.append(f"only {len(samples)} samples: run longer")
        return
    third = len(samples) // 3
    for name, factor, extra in (
        ("rss_kib", *RSS_GROWTH),
        ("fds", 1.0, FD_GROWTH),
        ("tasks", 1.0, TASK_GROWTH),
    ):
        first = statistics.median(getattr(s, name) for s in samples[:third])
        last = statistics.median(getattr(s, name) for s in samples[-third:])
        report.growth[name] = (first, last)
        if last > first * factor + extra:
            report.problems.append(f"{name} grew from {first:.0f} to {last:.0f}")


async def check_ledgers(store: Store, key_ids: list[str], report: Report) -> None:
    """Every charge is in the ledger: sum == balance, change == charges + credits, 0 held."""
    deadline = time.monotonic() + 30
    for key_id in key_ids:
        while await store.held(key_id) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)  # settlements of the last requests are being written
        held = await store.held(key_id)
        balance = await store.balance(key_id)
        entries = await store.ledger(key_id)
        total = sum(e.amount for e in entries)
        credits = sum(e.amount for e in entries if e.kind == "credit")
        charged = sum(e.amount for e in entries if e.kind == "usage")
        if held:
            report.problems.append(f"{key_id}: {held} credits still held")
        if total != balance:
            report.problems.append(f"{key_id}: ledger sums to {total}, balance is {balance}")
        if balance - KEY_BALANCE != charged + (credits - KEY_BALANCE):
            report.problems.append(f"{key_id}: balance change does not match the ledger")
        if any(e.amount > 0 for e in entries if e.kind == "usage"):
            report.problems.append(f"{key_id}: a usage entry credits the key")
        report.keys_checked += 1


async def soak(duration: float, concurrency: int, redis_url: str, seed: int = 1) -> Report:
    procs = Processes()
    report = Report(duration)
    try:
        mock_port, _ = start_mock(procs, 20)
        config = procs.workdir / "gateway.yaml"
        config.write_text(gateway_config(mock_port))
        port = free_port()
        env = {**os.environ, "GATEWAY_REDIS_URL": redis_url, ADMIN_ENV: ADMIN_TOKEN}
        argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
        gateway = procs.start(
            "gateway", [*argv, "--port", str(port), "--log-level", "ERROR"], env=env
        )
        url = f"http://127.0.0.1:{port}"
        procs.wait_http("gateway", gateway, url + "/readyz")

        timeout = aiohttp.ClientTimeout(total=30)
        connector = aiohttp.TCPConnector(limit=concurrency * 2)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            load = Load(url, http, seed)
            load.keys = [await load.new_key() for _ in range(3)]
            stop = asyncio.Event()
            started = time.monotonic()
            workers = [asyncio.create_task(load.worker(stop)) for _ in range(concurrency)]
            workers.append(asyncio.create_task(load.revocations(stop, max(1.0, duration / 20))))
            every = min(SAMPLE_EVERY, duration / 12)
            while time.monotonic() - started < duration:
                await asyncio.sleep(every)
                procs.check_alive()
                report.samples.append(await sample(url, http, gateway.pid, started))
            stop.set()
            await asyncio.gather(*workers)
            report.outcomes, report.unexpected = load.report_outcomes, load.unexpected

            # from_url: the client closes its own pool (no connection left to the GC).
            store = Store(aioredis.Redis.from_url(redis_url, decode_responses=True))
            try:
                await check_ledgers(store, load.key_ids, report)
            finally:
                await store.aclose()
        growth(report)
        if report.unexpected:
            report.problems.append(f"{sum(report.unexpected.values())} unexpected answers")
        for scenario in ("chat", "chat_stream", "abort_stream", "upstream_error", "no_key"):
            if not any(k.startswith(scenario + ":") for k in report.outcomes):
                report.problems.append(f"scenario {scenario} never ran")
    finally:
        codes = procs.stop_all()
        if codes.get("gateway") not in (0, None):
            report.problems.append(f"the gateway exited with status {codes['gateway']}")
    if report.ok:  # an exception above keeps them too
        shutil.rmtree(procs.workdir, ignore_errors=True)
    else:
        report.problems.append(f"logs and config kept in {procs.workdir}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration",
        type=float,
        default=float(os.environ.get("SOAK_DURATION", "300")),
        help="seconds of load (default: $SOAK_DURATION or 300)",
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the report here as JSON")
    args = parser.parse_args(argv)
    redis_url = os.environ.get("GATEWAY_TEST_REDIS_URL")
    if not redis_url:
        print("bench.soak needs GATEWAY_TEST_REDIS_URL (run it under tests/with-redis.sh)")
        return 2
    report = asyncio.run(soak(args.duration, args.concurrency, redis_url, args.seed))
    print(report.text())
    if args.json:
        data = {
            "outcomes": report.outcomes,
            "samples": [s.__dict__ for s in report.samples],
            "problems": report.problems,
        }
        args.json.write_text(json.dumps(data, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
