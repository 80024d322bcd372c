"""``python -m bench.capacity``: how many slow streams one worker holds, and flat memory.

Against a real Redis (GATEWAY_TEST_REDIS_URL; ``make bench-capacity`` starts one),
a key with a concurrency limit, a priced route and metering on, one gateway worker:

1. Open streams: a fresh gateway's idle RSS; then ``--streams`` (10,000) concurrent
   streamed Chat Completions that the mock trickles (``mock-hold-<MS>``: a chunk every
   ``--interval`` s) until all of them have their first chunk; the gateway's RSS and
   descriptors then, and memory per open stream = (RSS open - RSS idle) / streams.
   Then the mock lets them finish: every one must end with ``[DONE]`` and no error,
   and the key's balance must drop by exactly streams x the cost of one.
2. Long run: another fresh gateway, ``--requests`` (1,000,000) non-streaming requests
   at concurrency 64 (wrk in timed slices, else the Python load); RSS after the first
   10% and at the end (each once the gateway is idle), and the growth between them.

Prints a table, writes bench/results/capacity.json, and exits 1 on any error, a
charge missing, credits still held once everything has settled, or growth above 5%.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import procs as p
from bench.load import Target, chat_body, run_async, run_load, wrk_path
from bench.verify import check

RESULTS = Path(__file__).resolve().parent / "results" / "capacity.json"
BALANCE = 10**15
MAX_GROWTH = 0.05
IDLE_TARGET_MB = 60.0
HOLD_AGENT = "bench-hold"
FD_RESERVE = 200  # the gateway's descriptors besides streams: Redis pool (128), listeners...


@dataclass
class Streams:
    """Part 1: ``n`` streams held open at once."""

    n: int
    interval_s: float
    opened: int = 0
    completed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    open_seconds: float = 0.0
    rss_kib: dict[str, int | None] = field(default_factory=dict)  # idle, open, after
    fds: dict[str, int | None] = field(default_factory=dict)
    mock_rss_open_kib: int | None = None
    client_rss_open_kib: int | None = None
    cost_per_stream: int | None = None
    billed: int | None = None
    held_after: int | None = None  # credits still held once all have finished

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    @property
    def per_stream_kib(self) -> float | None:
        idle, open_ = self.rss_kib.get("idle"), self.rss_kib.get("open")
        if idle is None or open_ is None or not self.opened:
            return None
        return (open_ - idle) / self.opened

    @property
    def billing_ok(self) -> bool:
        if self.cost_per_stream is None or self.billed is None:
            return False
        return self.billed == self.completed * self.cost_per_stream


@dataclass
class LongRun:
    """Part 2: RSS over ``requests`` non-streaming requests."""

    requests: int
    concurrency: int
    load: str
    done: int = 0
    non_2xx: int = 0
    socket_errors: int = 0
    seconds: float = 0.0
    idle_kib: int | None = None
    at_mark_kib: int | None = None  # after the first 10%
    mark_requests: int = 0
    end_kib: int | None = None
    samples: list[tuple[int, int | None]] = field(default_factory=list)  # (requests, KiB)
    cost_per_request: int | None = None
    billed: int | None = None
    held_after: int | None = None

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    @property
    def growth(self) -> float | None:
        if not self.at_mark_kib or self.end_kib is None:
            return None
        return self.end_kib / self.at_mark_kib - 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    parser.add_argument("--streams", type=int, default=10_000, help="open streams (10,000)")
    parser.add_argument("--interval", type=float, default=5.0, help="s between chunks (5)")
    parser.add_argument(
        "--opening", type=int, default=128, help="streams opening at once, the ramp (128)"
    )
    parser.add_argument("--requests", type=int, default=1_000_000, help="long run (1,000,000)")
    parser.add_argument("--concurrency", type=int, default=64, help="long run concurrency (64)")
    parser.add_argument("--quick", action="store_true", help="100 streams, 20,000 requests")
    parser.add_argument("--only", choices=("streams", "long"), help="run one part only")
    parser.add_argument("--python-load", action="store_true", help="never use wrk")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, config)")
    parser.add_argument("--json-out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.streams, args.requests = 100, 20_000
    return args


def raise_nofile(want: int) -> int:
    """Raise this process's descriptor limit (children inherit it); returns the soft one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:  # root may raise the hard limit too
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            pass
    new = want if hard == resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, new), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    children = p.Processes()
    return p.supervise("capacity", args.keep, lambda: _run(args, children), children)


# --- set-up --------------------------------------------------------------------------------


@dataclass
class Setup:
    children: p.Processes
    config: Path
    redis_url: str
    mock_url: str
    mock_pid: int
    key_id: str
    secret: str

    def account(self) -> tuple[int, int]:
        return p.account(self.config, self.redis_url, self.key_id)

    def settle(self, before: int, expected: int | None, wait: float = 60.0) -> tuple[int, int]:
        """(balance, held) once settlements have landed: nothing held, and the balance
        ``expected`` (None: changed from ``before`` and stable); else after ``wait`` s."""
        deadline = time.monotonic() + wait
        last = self.account()
        while time.monotonic() < deadline:
            if last[1] == 0 and expected is not None and last[0] == expected:
                break
            time.sleep(1.0)
            now = self.account()
            if expected is None and now == last and now[1] == 0 and now[0] != before:
                break
            last = now
        return last

    def gateway(self, name: str) -> tuple[str, int]:
        """A fresh gateway process; returns (its URL, its pid)."""
        port, pid, _ = p.start_gateway(self.children, self.config, self.redis_url, False, name=name)
        return f"http://127.0.0.1:{port}/v1/chat/completions", pid

    def target(self, url: str, agent: str, stream: bool) -> Target:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.secret}"}
        return Target(url, headers, chat_body(agent, stream))


def _setup(args: argparse.Namespace, children: p.Processes) -> Setup:
    redis_url = os.environ.get("GATEWAY_TEST_REDIS_URL")
    if not redis_url:
        raise p.BenchError("GATEWAY_TEST_REDIS_URL is not set (run `make bench-capacity`)")
    mock_port, mock_pid = p.start_mock(children, 20)
    room = args.streams + 1024
    extra = f"limits: {{max_connections: {room}}}\n"
    hold = {HOLD_AGENT: f"mock-hold-{round(args.interval * 1000)}"}
    config = p.write_config(
        children,
        mock_port,
        redis_url,
        1000,
        upstream_connections=room,
        more_routes=hold,
        extra=extra,
    )
    key_id, secret = p.create_key(config, redis_url, BALANCE, "--max-concurrent", str(room))
    return Setup(
        children, config, redis_url, f"http://127.0.0.1:{mock_port}/v1", mock_pid, key_id, secret
    )


# --- part 1: open streams ------------------------------------------------------------------


async def _hold_streams(
    setup: Setup, target: Target, result: Streams, opening: int, pid: int
) -> None:
    """Open ``result.n`` held streams, sample while all are open, release, read them out."""
    n = result.n
    gate = asyncio.Semaphore(opening)
    settled = asyncio.Event()  # every stream is open or has failed to open
    failed_to_open = 0
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=60, sock_read=max(60, 4 * result.interval_s)
    )
    connector = aiohttp.TCPConnector(limit=0)

    def opened_or_failed() -> None:
        if result.opened + failed_to_open >= n:
            settled.set()

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal failed_to_open
        await gate.acquire()
        first = done = False
        try:
            async with session.post(target.url, data=target.body, headers=target.headers) as resp:
                if resp.status != 200:
                    result.error(f"HTTP {resp.status}")
                    await resp.read()
                    return
                buffer = b""
                async for data in resp.content.iter_any():
                    buffer += data
                    *frames, buffer = buffer.split(b"\n\n")
                    for frame in frames:
                        if not first and frame.startswith(b"data: "):
                            first = True
                            gate.release()
                            result.opened += 1
                            opened_or_failed()
                        if frame == b"data: [DONE]":
                            done = True
                        elif b'"error"' in frame:
                            result.error("error event")
                            return
                if done:
                    result.completed += 1
                else:
                    result.error("ended without [DONE]")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            result.error(type(exc).__name__)
        finally:
            if not first:
                gate.release()
                failed_to_open += 1
                opened_or_failed()

    async def progress(start: float) -> None:
        while True:
            await asyncio.sleep(5)
            rss = p.vm_rss(pid)
            print(
                f"  {result.opened:,}/{n:,} open after {time.monotonic() - start:.0f} s "
                f"({failed_to_open:,} failed; gateway RSS {(rss or 0) / 1024:.0f} MB, "
                f"{p.fd_count(pid)} fds)",
                flush=True,
            )

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.monotonic()
        tasks = [asyncio.create_task(one(session)) for _ in range(n)]
        ticker = asyncio.create_task(progress(start)) if n > 1 else None
        await settled.wait()
        result.open_seconds = time.monotonic() - start
        if ticker is not None:
            ticker.cancel()
        # One more chunk interval: every stream has had a chunk through while all are open.
        await asyncio.sleep(result.interval_s + 1)
        result.rss_kib["open"] = p.vm_rss(pid)
        result.fds["open"] = p.fd_count(pid)
        result.mock_rss_open_kib = p.vm_rss(setup.mock_pid)
        result.client_rss_open_kib = p.vm_rss(os.getpid())
        async with session.post(f"{setup.mock_url}/mock/release") as resp:
            released = (await resp.json())["released"]
        print(f"  sampled; the mock releases {released:,} held streams", flush=True)
        await asyncio.gather(*tasks)


def open_streams(args: argparse.Namespace, setup: Setup) -> Streams:
    result = Streams(args.streams, args.interval)
    url, pid = setup.gateway("gateway-streams")
    target = setup.target(url, HOLD_AGENT, stream=True)

    before = setup.account()[0]  # one stream first: it must work, and says what one costs
    probe = Streams(1, args.interval)
    run_async(_hold_streams(setup, target, probe, 1, pid))
    if probe.completed != 1:
        raise p.BenchError(f"one held stream through the gateway failed: {dict(probe.errors)}")
    start_balance, _ = setup.settle(before, None)
    result.cost_per_stream = before - start_balance
    if result.cost_per_stream <= 0:
        raise p.BenchError("a held stream was not billed")

    p.quiesce([pid, setup.mock_pid])
    result.rss_kib["idle"] = p.vm_rss(pid)
    result.fds["idle"] = p.fd_count(pid)
    print(
        f"open streams: idle gateway RSS {(result.rss_kib['idle'] or 0) / 1024:.1f} MB; opening "
        f"{args.streams:,} streams ({args.opening} at a time), a chunk every {args.interval:g} s",
        flush=True,
    )
    run_async(_hold_streams(setup, target, result, args.opening, pid))
    setup.children.check_alive()
    expected = start_balance - result.completed * result.cost_per_stream
    end_balance, result.held_after = setup.settle(start_balance, expected)
    result.billed = start_balance - end_balance
    # The upstream pool keeps idle connections for a while (aiohttp: 15 s): wait that out.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (p.fd_count(pid) or 0) > (result.fds["idle"] or 0) + 160:
        time.sleep(1)
    p.quiesce([pid])
    result.rss_kib["after"] = p.vm_rss(pid)
    result.fds["after"] = p.fd_count(pid)
    setup.children.stop("gateway-streams", timeout=60)
    return result


# --- part 2: long run ----------------------------------------------------------------------


def long_run(args: argparse.Namespace, setup: Setup) -> LongRun:
    use_wrk = wrk_path() is not None and not args.python_load
    load = "wrk -t1, timed slices" if use_wrk else "Python aiohttp load, timed slices"
    result = LongRun(args.requests, args.concurrency, load)
    url, pid = setup.gateway("gateway-long")
    target = setup.target(url, "bench", stream=False)

    before = setup.account()[0]
    check("a non-streaming request through the gateway", target, False, 20)
    result.cost_per_request = before - setup.settle(before, None)[0]
    run_load(target, args.concurrency, 1, setup.children.workdir, use_wrk)  # warm-up
    p.quiesce([pid, setup.mock_pid])
    result.idle_kib = p.vm_rss(pid)
    start_balance = setup.account()[0]

    mark = args.requests // 10
    print(
        f"long run: {args.requests:,} non-streaming requests at c{args.concurrency} ({load}); "
        f"idle gateway RSS {(result.idle_kib or 0) / 1024:.1f} MB",
        flush=True,
    )
    rps = 0.0
    start = time.monotonic()
    while result.done < args.requests:
        goal = mark if result.at_mark_kib is None else args.requests
        seconds = max(1, min(30, round((goal - result.done) / rps))) if rps else 2
        got = run_load(target, args.concurrency, seconds, setup.children.workdir, use_wrk)
        setup.children.check_alive()
        result.done += got.requests
        result.non_2xx += got.non_2xx
        result.socket_errors += got.socket_errors
        rps = got.rps or 1.0
        rss = p.vm_rss(pid)
        if result.at_mark_kib is None and result.done >= mark:
            p.quiesce([pid])
            rss = result.at_mark_kib = p.vm_rss(pid)
            result.mark_requests = result.done
        result.samples.append((result.done, rss))
        print(
            f"  {result.done:,}/{args.requests:,} requests, {rps:,.0f} rps, "
            f"{result.errors} errors, gateway RSS {(rss or 0) / 1024:.1f} MB",
            flush=True,
        )
    result.seconds = time.monotonic() - start
    p.quiesce([pid])
    result.end_kib = p.vm_rss(pid)
    # wrk's slices cut requests in flight, which may be billed too: no exact figure to wait for
    end_balance, result.held_after = setup.settle(start_balance, None)
    result.billed = start_balance - end_balance
    setup.children.stop("gateway-long", timeout=60)
    return result


# --- report --------------------------------------------------------------------------------


def _mb(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f} MB"


def _streams_lines(s: Streams) -> list[str]:
    per = s.per_stream_kib
    rate = s.opened / s.open_seconds if s.open_seconds else 0.0
    idle, open_ = s.rss_kib.get("idle"), s.rss_kib.get("open")
    errors = ", ".join(f"{k}: {v:,}" for k, v in s.errors.items()) or "none"
    return [
        f"open streams ({s.n:,} requested, a chunk every {s.interval_s:g} s):",
        f"  opened           {s.opened:,} in {s.open_seconds:.1f} s ({rate:,.0f}/s)",
        f"  gateway RSS      idle {_mb(idle)}, {_mb(open_)} with {s.opened:,} open, "
        f"{_mb(s.rss_kib.get('after'))} after they finished",
        f"  per open stream  {per:.1f} KiB" if per is not None else "  per open stream  n/a",
        f"  gateway fds      idle {s.fds.get('idle')}, {s.fds.get('open')} open, "
        f"{s.fds.get('after')} after",
        f"  others, open     mock RSS {_mb(s.mock_rss_open_kib)}, "
        f"client RSS {_mb(s.client_rss_open_kib)}",
        f"  finished         {s.completed:,} with [DONE]; errors: {errors}",
        f"  billed           {s.billed or 0:,} credits for {s.completed:,} x {s.cost_per_stream} = "
        f"{s.completed * (s.cost_per_stream or 0):,} expected; {s.held_after} still held",
    ]


def _long_lines(r: LongRun) -> list[str]:
    growth = "n/a" if r.growth is None else f"{r.growth:+.2%}"
    rps = r.done / r.seconds if r.seconds else 0.0
    answered = r.done - r.errors
    expected = answered * (r.cost_per_request or 0)
    ratio = f"{(r.billed or 0) / expected:.4f}" if expected else "n/a"
    return [
        f"long run ({r.done:,} non-streaming requests at c{r.concurrency}, {r.load}):",
        f"  requests         {r.done:,} in {r.seconds:.0f} s ({rps:,.0f} rps); errors: "
        f"{r.non_2xx:,} non-2xx, {r.socket_errors:,} socket",
        f"  gateway RSS      idle {_mb(r.idle_kib)}, after {r.mark_requests:,} requests "
        f"{_mb(r.at_mark_kib)}, at the end {_mb(r.end_kib)}",
        f"  growth           {growth} (at most {MAX_GROWTH:.0%})",
        f"  billed           {r.billed or 0:,} credits, {ratio} x the {answered:,} answered "
        f"x {r.cost_per_request}; {r.held_after} still held",
    ]


Check = tuple[str, bool, str, bool]  # what, passed, figure, fails the run


def checks(s: Streams | None, r: LongRun | None) -> list[Check]:
    found: list[Check] = []
    idle = s.rss_kib.get("idle") if s else (r.idle_kib if r else None)
    if idle is not None:
        ok = idle / 1024 <= IDLE_TARGET_MB
        found.append((f"idle RSS <= {IDLE_TARGET_MB:.0f} MB", ok, _mb(idle), False))
    if s is not None:
        ok = s.opened == s.n and s.completed == s.n and not s.errors
        found.append((f"{s.n:,} open streams, no errors", ok, f"{s.completed:,} completed", True))
        found.append(
            ("each stream billed exactly", s.billing_ok, f"{s.billed or 0:,} credits", True)
        )
        found.append(("streams: nothing left held", s.held_after == 0, f"{s.held_after}", True))
    if r is not None:
        found.append(("long run, no errors", r.errors == 0, f"{r.errors:,} errors", True))
        least = (r.done - r.errors) * (r.cost_per_request or 0)
        ok = r.billed is not None and r.billed >= least
        found.append(("long run, every answer billed", ok, f"{r.billed or 0:,} credits", True))
        found.append(("long run: nothing left held", r.held_after == 0, f"{r.held_after}", True))
        ok = r.growth is not None and r.growth <= MAX_GROWTH
        growth = "n/a" if r.growth is None else f"{r.growth:+.2%}"
        found.append((f"RSS growth {r.mark_requests:,} -> {r.done:,} <= 5%", ok, growth, True))
    return found


def _run(args: argparse.Namespace, children: p.Processes) -> int:
    need = 2 * args.streams + FD_RESERVE
    nofile = raise_nofile(need + 4096)
    print(f"capacity: descriptor limit {nofile:,}", flush=True)
    if args.only != "long" and nofile < need:
        print(
            f"capacity: WARNING: the gateway holds 2 descriptors per open stream (the client's "
            f"and the upstream's sockets) and up to {FD_RESERVE} more (Redis pool...): "
            f"{args.streams:,} streams need {need:,} and the limit is {nofile:,} (the hard limit "
            f"cannot be raised here): expect failures beyond about "
            f"{(nofile - FD_RESERVE) // 2:,} streams",
            file=sys.stderr,
            flush=True,
        )
    busy = p.machine_busy()
    if busy is not None and busy > 0.2:
        print(f"capacity: WARNING: {busy:.0%} of the CPUs busy before start", file=sys.stderr)
    setup = _setup(args, children)
    streams = open_streams(args, setup) if args.only != "long" else None
    long = long_run(args, setup) if args.only != "streams" else None

    print()
    lines = (_streams_lines(streams) if streams else []) + (_long_lines(long) if long else [])
    print("\n".join(lines))
    found = checks(streams, long)
    print()
    for name, ok, figure, fatal in found:
        verdict = "ok" if ok else ("FAILED" if fatal else "missed")
        print(f"  {name:<44} {figure:>20}  {verdict}")

    data: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "cpu_busy_before_start": busy,
        "python": sys.version.split()[0],
        "descriptor_limit": nofile,
        "streams": asdict(streams) | {"per_stream_kib": streams.per_stream_kib}
        if streams
        else None,
        "long_run": asdict(long) | {"errors": long.errors, "growth": long.growth} if long else None,
        "checks": [{"check": c, "ok": ok, "figure": f, "fatal": x} for c, ok, f, x in found],
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"\ncapacity: results written to {args.json_out}")
    return 1 if any(fatal and not ok for _, ok, _, fatal in found) else 0


if __name__ == "__main__":
    raise SystemExit(main())
