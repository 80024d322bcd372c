"""``python -m bench``: the mock upstream directly versus through the gateway, in one run.

Starts the mock upstream and ``gateway serve`` (real Redis from
GATEWAY_TEST_REDIS_URL, else the embedded store), creates a key, checks one
request of each kind, then runs every scenario direct and through the gateway
back to back, measures time to first byte/token, the gateway's memory, and
what metering billed; prints one table and writes bench/results/latest.json.
With ``--peers``, the LiteLLM proxy and the Portkey gateway (``bench/peers.py``)
run every scenario too, against the same mock with the same load generator.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import metering as bench_metering
from bench import peers as bench_peers
from bench import procs as p
from bench import report
from bench import storage as bench_storage
from bench.load import (
    LoadResult,
    Target,
    TtfbResult,
    chat_body,
    measure_ttfb,
    run_load,
    wrk_path,
)
from bench.verify import check

BALANCE = 1_000_000_000_000


@dataclass(frozen=True)
class Kind:
    """A kind of request: its upstream model (direct) and agent (gateway)."""

    name: str
    stream: bool
    chunks: int
    model: str
    agent: str


@dataclass(frozen=True)
class Scenario:
    kind: Kind
    concurrency: int

    @property
    def name(self) -> str:
        what = f"stream {self.kind.chunks}ch" if self.kind.stream else "non-stream"
        return f"{what} c{self.concurrency}"


@dataclass
class Setup:
    workdir: Path
    mock_url: str
    gateway_url: str
    secret: str
    gateway_pid: int
    mock_pid: int
    config: Path
    redis_url: str | None  # None: embedded store
    key_id: str | None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--duration",
        type=float,
        default=float(os.environ.get("BENCH_DURATION", "5")),
        help="seconds per cell (default 5, or $BENCH_DURATION)",
    )
    parser.add_argument("--quick", action="store_true", help="1 s cells")
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
    parser.add_argument("--long-chunks", type=int, default=1000, help="chunks of the long stream")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated (1,16,64)")
    parser.add_argument(
        "--peers", action="store_true", help="also the LiteLLM proxy and the Portkey gateway"
    )
    parser.add_argument("--python-load", action="store_true", help="never use wrk")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, config)")
    parser.add_argument("--json-out", type=Path, default=report.RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 1.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    children = p.Processes()
    others = p.Processes(workdir=children.workdir)  # peers: their end never stops the bench
    return p.supervise("bench", args.keep, lambda: _run(args, children, others), children, others)


def direct(setup: Setup, kind: Kind) -> Target:
    headers = {"Content-Type": "application/json"}
    return Target(setup.mock_url, headers, chat_body(kind.model, kind.stream))


def via_gateway(setup: Setup, kind: Kind) -> Target:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {setup.secret}"}
    return Target(setup.gateway_url, headers, chat_body(kind.agent, kind.stream))


def via_peer(peer: bench_peers.Peer, kind: Kind) -> Target:
    return Target(
        peer.url, peer.headers, chat_body(kind.agent if peer.by_agent else kind.model, kind.stream)
    )


def _start(args: argparse.Namespace, children: p.Processes) -> Setup:
    redis_url = os.environ.get("GATEWAY_TEST_REDIS_URL") or None
    if redis_url is None:
        print(
            "bench: WARNING: GATEWAY_TEST_REDIS_URL is not set; using the EMBEDDED store, "
            "which is not what production runs (use `make bench` for a real Redis)",
            file=sys.stderr,
        )
    mock_port, mock_pid = p.start_mock(children, args.chunks)
    config = p.write_config(children, mock_port, redis_url or "embedded", args.long_chunks)
    gw_port, gw_pid, demo = p.start_gateway(children, config, redis_url or "", redis_url is None)
    key_id: str | None = None
    if redis_url is not None:
        key_id, secret = p.create_key(config, redis_url, BALANCE)
    else:
        assert demo is not None
        secret = demo
    return Setup(
        workdir=children.workdir,
        mock_url=f"http://127.0.0.1:{mock_port}/v1/chat/completions",
        gateway_url=f"http://127.0.0.1:{gw_port}/v1/chat/completions",
        secret=secret,
        gateway_pid=gw_pid,
        mock_pid=mock_pid,
        config=config,
        redis_url=redis_url,
        key_id=key_id,
    )


def _balance(setup: Setup) -> int | None:
    if setup.redis_url is None or setup.key_id is None:
        return None
    return p.account(setup.config, setup.redis_url, setup.key_id)[0]


def _settled_balance(setup: Setup, before: int | None, wait: float = 5.0) -> int | None:
    """The balance once settlement has landed: changed from ``before`` and then stable."""
    if before is None:
        return None
    deadline = time.monotonic() + wait
    last = _balance(setup)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = _balance(setup)
        if now == last and now != before:
            return now
        last = now
    return last


def _verify(setup: Setup, kinds: list[Kind]) -> dict[str, int]:
    """One request of each kind, direct and through the gateway; the credits each costs."""
    costs: dict[str, int] = {}
    for kind in kinds:
        before = _balance(setup)
        d_text, d_usage = check(
            f"direct {kind.name}", direct(setup, kind), kind.stream, kind.chunks
        )
        g_text, g_usage = check(
            f"gateway {kind.name}", via_gateway(setup, kind), kind.stream, kind.chunks
        )
        if d_text != g_text:
            print(f"bench: WARNING: {kind.name}: the gateway's content differs from the mock's")
        if g_usage.get("completion_tokens") != d_usage.get("completion_tokens"):
            print(f"bench: WARNING: {kind.name}: usage differs: {d_usage} vs {g_usage}")
        after = _settled_balance(setup, before)
        if before is not None and after is not None:
            costs[kind.name] = before - after
            if after >= before:
                raise p.BenchError(f"gateway {kind.name}: the request was not billed")
    print(f"bench: verified one request of each kind; credits per request: {costs or 'n/a'}")
    return costs


def _verify_peers(peers: list[bench_peers.Peer], kinds: list[Kind]) -> None:
    """One request of each kind per peer; a wrong answer is a problem noted, not a stop."""
    for peer in peers:
        for kind in kinds:
            if not peer.alive():
                break
            try:
                check(f"{peer.name} {kind.name}", via_peer(peer, kind), kind.stream, kind.chunks)
            except p.BenchError as exc:
                peer.problems.append(str(exc))
                print(f"bench: WARNING: {exc}", file=sys.stderr)


def _cell(
    args: argparse.Namespace,
    setup: Setup,
    target: Target,
    concurrency: int,
    use_wrk: bool,
    peer: bench_peers.Peer | None = None,
    quiet: tuple[int, ...] = (),
) -> LoadResult:
    """One cell of load; first every process in it, and ``quiet`` (the peers: a slow one
    works through its backlog after its cell ends), must have gone idle."""
    pids = {"gateway": setup.gateway_pid, "mock": setup.mock_pid}
    if peer is not None:
        pids[peer.name] = peer.pid
    waited = p.quiesce([*pids.values(), *quiet])
    if waited > 0.5:
        print(f"  (waited {waited:.1f} s for {', '.join(pids)} to go idle)", flush=True)
    before = {name: p.cpu_ticks(pid) for name, pid in pids.items()}
    result = run_load(target, concurrency, args.duration, setup.workdir, use_wrk)
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    for name, pid in pids.items():
        start, end = before[name], p.cpu_ticks(pid)
        if start is not None and end is not None and result.requests:
            result.cpu_us[name] = (end - start) * tick_us / result.requests
    return result


def _show(label: str, r: LoadResult) -> None:
    errors = f", {r.errors} ERRORS" if r.errors else ""
    print(
        f"  {label:<36} {r.rps:>9.0f} rps  p50 {r.p50_ms:7.3f} ms  p99 {r.p99_ms:7.3f} ms"
        f"  ({r.requests} requests{errors}; CPU per request: {_cpu(r)})",
        flush=True,
    )


def _cpu(r: LoadResult) -> str:
    return ", ".join(f"{name} {us:.0f} us" for name, us in r.cpu_us.items() if us >= 1) or "-"


def _run(args: argparse.Namespace, children: p.Processes, others: p.Processes) -> int:
    use_wrk = wrk_path() is not None and not args.python_load
    loadgen = "wrk -t1 (" + str(wrk_path()) + ")" if use_wrk else "Python aiohttp fallback"
    print(f"bench: load generator: {loadgen}; {args.duration:g} s per cell", flush=True)
    busy = p.machine_busy()
    if busy is not None and busy > 0.2:
        print(
            f"bench: WARNING: {busy:.0%} of the CPUs are busy before start; other processes "
            "share them and the figures will be noisy",
            file=sys.stderr,
        )
    setup = _start(args, children)
    short = Kind("stream", True, args.chunks, "mock", "bench")
    long = Kind("long", True, args.long_chunks, f"mock-chunks-{args.long_chunks}", "bench-long")
    plain = Kind("non-stream", False, args.chunks, "mock", "bench")
    costs = _verify(setup, [plain, short, long])
    idle = p.rss_kib(setup.gateway_pid)
    peers: list[bench_peers.Peer] = []
    if args.peers:
        mock_port = urlsplit(setup.mock_url).port or 0
        peers = bench_peers.start_peers(others, mock_port, args.long_chunks, setup.redis_url)
        _verify_peers(peers, [plain, short, long])
    start_balance = _balance(setup)
    sent: dict[str, int] = {k.name: 0 for k in (plain, short, long)}

    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    warm = 1.0
    for kind in (plain, short):  # warm the pools and code paths; not measured
        run_load(direct(setup, kind), max(levels), warm, setup.workdir, use_wrk)
        w = run_load(via_gateway(setup, kind), max(levels), warm, setup.workdir, use_wrk)
        sent[kind.name] += w.requests
        for peer in peers:
            if peer.alive():
                run_load(via_peer(peer, kind), max(levels), warm, setup.workdir, use_wrk)
    children.check_alive()

    scenarios = [Scenario(k, c) for k in (plain, short) for c in levels]
    scenarios.append(Scenario(long, 1))
    rows: list[report.Row] = []

    def quiet() -> tuple[int, ...]:
        return tuple(peer.pid for peer in peers if peer.alive())

    for sc in scenarios:
        print(f"{sc.name}:", flush=True)
        d = _cell(args, setup, direct(setup, sc.kind), sc.concurrency, use_wrk, quiet=quiet())
        _show("direct (client -> mock)", d)
        g = _cell(args, setup, via_gateway(setup, sc.kind), sc.concurrency, use_wrk, quiet=quiet())
        _show("gateway (client -> gateway -> mock)", g)
        sent[sc.kind.name] += g.requests
        children.check_alive()
        row = report.Row(sc.name, sc.kind.stream, sc.kind.chunks, sc.concurrency, d, g)
        for peer in peers:
            if peer.alive():
                r = _cell(
                    args, setup, via_peer(peer, sc.kind), sc.concurrency, use_wrk, peer, quiet()
                )
                _show(f"{peer.name} (client -> {peer.name} -> mock)", r)
                row.peers[peer.name] = r
        rows.append(row)

    print("time to first byte/token, c1:", flush=True)
    p.quiesce([setup.gateway_pid, setup.mock_pid, *quiet()])
    ttfb_d = measure_ttfb(direct(setup, short), args.duration)
    p.quiesce([setup.gateway_pid, setup.mock_pid, *quiet()])
    ttfb_g = measure_ttfb(via_gateway(setup, short), args.duration)
    sent[short.name] += ttfb_g.requests
    ttfb: dict[str, TtfbResult] = {"direct": ttfb_d, "gateway": ttfb_g}
    for peer in peers:
        if peer.alive():
            p.quiesce([setup.mock_pid, peer.pid])
            ttfb[peer.name] = measure_ttfb(via_peer(peer, short), args.duration)
    children.check_alive()
    after = p.rss_kib(setup.gateway_pid)
    peak: dict[str, dict[str, int] | None] = {"gateway": after, "mock": p.rss_kib(setup.mock_pid)}
    peak.update({x.name: p.rss_kib(x.pid) for x in peers if x.alive()})
    billing = _billing(setup, start_balance, costs, sent)

    idle_mb = idle["VmRSS"] / 1024 if idle else None
    found = report.checks(rows, (ttfb_d, ttfb_g), idle_mb)
    print()
    measured = [x.name for x in peers if any(x.name in r.peers for r in rows)]
    print(report.peers_table(rows, measured) if peers else report.table(rows))
    for peer in peers:
        state = f"ABSENT ({peer.absent})" if peer.absent else "measured"
        print(f"{peer.name} {peer.version}: {state}; {peer.note}")
        for problem in peer.problems:
            print(f"  problem: {problem.splitlines()[0][:160]}")
    print()
    print(report.cpu_table(rows))
    print()
    print(report.peers_ttfb_table(ttfb) if peers else report.ttfb_table(ttfb_d, ttfb_g))
    print()
    print(_rss_line(idle, after))
    idles = {"gateway": idle, **{x.name: x.idle_rss_kib for x in peers}}
    print(report.rss_line(peak, idles))
    if billing:
        print(
            f"metering: {billing['billed_credits']:,} credits billed for "
            f"{billing['completed_requests']:,} completed gateway requests "
            f"(expected {billing['expected_credits']:,}; ratio {billing['ratio']:.4f})"
        )
    metering_cost = bench_metering.measure(setup.redis_url) if setup.redis_url else None
    if metering_cost is not None:
        print(bench_metering.line(metering_cost))
    storage_cost = bench_storage.measure(setup.redis_url) if setup.redis_url else None
    if storage_cost is not None:
        print(bench_storage.line(storage_cost))
    print()
    print(report.checks_table(found))
    least = report.least_admission_line(rows, ttfb)
    if least is not None:
        print(least)

    data = report.to_json(
        rows,
        ttfb={"direct": asdict(ttfb_d), "gateway": asdict(ttfb_g)},
        gateway_rss_kib={"idle": idle, "after_load": after},
        peak_rss_kib=peak,
        peers={x.name: _peer_json(x, ttfb.get(x.name), peak.get(x.name)) for x in peers},
        billing=billing,
        metering_cost=asdict(metering_cost) if metering_cost else None,
        storage_cost=asdict(storage_cost) if storage_cost else None,
        checks=[asdict(c) for c in found],
        machine=_machine(loadgen, busy),
        settings={
            "duration_s": args.duration,
            "chunks": args.chunks,
            "long_chunks": args.long_chunks,
            "concurrency": levels,
            "store": "redis" if setup.redis_url else "embedded",
            "peers": args.peers,
        },
    )
    path = report.write_json(data, args.json_out)
    print(f"\nbench: results written to {path}")
    errors = sum(r.gateway.errors for r in rows) + ttfb_g.errors
    if errors:
        print(f"bench: the gateway answered {errors} requests with errors", file=sys.stderr)
        return 1
    return 0


def _billing(
    setup: Setup, start: int | None, costs: dict[str, int], sent: dict[str, int]
) -> dict[str, Any] | None:
    """What metering billed during load versus completed requests x credits per request."""
    if start is None or not costs:
        return None
    end = _settled_balance(setup, start, wait=10.0)
    assert end is not None
    billed = start - end
    expected = sum(costs[k] * n for k, n in sent.items())
    return {
        "billed_credits": billed,
        "expected_credits": expected,
        "completed_requests": sum(sent.values()),
        "credits_per_request": costs,
        "ratio": billed / expected if expected else 0.0,
    }


def _peer_json(
    peer: bench_peers.Peer, ttfb: TtfbResult | None, peak: dict[str, int] | None
) -> dict[str, Any]:
    """The peers section of the JSON (the per-scenario figures are under "scenarios")."""
    return {
        "present": peer.absent is None,
        "version": peer.version,
        "absent": peer.absent,
        "note": peer.note,
        "problems": peer.problems,
        "ttfb": asdict(ttfb) if ttfb else None,
        "rss_kib": {"idle": peer.idle_rss_kib, "peak": peak},
    }


def _rss_line(idle: dict[str, int] | None, after: dict[str, int] | None) -> str:
    if not idle or not after:
        return "gateway RSS: not available (no /proc)"
    return (
        f"gateway RSS: idle {idle['VmRSS'] / 1024:.1f} MB, after load "
        f"{after['VmRSS'] / 1024:.1f} MB, peak {after['VmHWM'] / 1024:.1f} MB"
    )


def _machine(loadgen: str, busy: float | None) -> dict[str, Any]:
    wrk = wrk_path()
    version = ""
    if wrk:
        done = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        version = (done.stdout or done.stderr).splitlines()[0] if done.stdout or done.stderr else ""
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "cpu_busy_before_start": busy,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "load_generator": loadgen,
        "wrk_version": version,
    }
