"""Instructions per request of two gateways side by side (valgrind's callgrind).

``python -m bench.instructions [--base REV] [--change REV] [--floor]`` runs the gateway
at ``--base`` (default ``HEAD~1``) and at ``--change`` (default: this work tree as it
is, committed or not) under ``valgrind --tool=callgrind``, against one mock upstream
and one Redis (``GATEWAY_TEST_REDIS_URL``, else a ``redis-server`` it starts), and
counts the instructions each executes per request, scenario by scenario:

- ``ns-c1``: 300 non-streaming requests at concurrency 1,
- ``ns-c4``: 300 non-streaming requests at concurrency 4,
- ``s20-c4``: 300 streams of 20 chunks at concurrency 4,
- ``s1000-c1``: 30 streams of 1,000 chunks at concurrency 1,
- ``t20-c4``: 300 streams of 20 chunks at concurrency 4 whose frames come 5 ms apart,
  as a model's tokens do: one read per chunk (``s20-c4``'s come in a few reads).

Counting is off while a gateway starts and warms up (a few requests of the scenario),
on for exactly the scenario's requests, then dumped and read back. The two gateways
take turns per scenario (never at once), so both see the same machine; instruction
counts depend far less on its load than time does, which is why this is the measure to
hold a change against on a shared machine. Under callgrind a gateway runs about 50
times slower, so more upstream chunks arrive per read than at full speed and a
stream's per-read costs weigh less.

Each gateway runs as ``bench/counted_gateway.py`` starts it, with its two wall-clock
windows (the aggregates' flush each second; up to 72c3dea, a settlement's 2 ms wait for
a round trip to share) set to weigh on a request as at full speed; without that, the same code
counted up to 5% apart from run to run, and 2.5% within one. With it, 2,153k-2,156k
at ns c1 in one run, so one run tells a change of a few tenths of a percent;
``--repeat N`` counts each scenario N times per gateway, in alternating order, and
keeps the median.

Each gateway has its own key; every answer is checked (status, shape, ``[DONE]``),
and at the end each key's balance must have dropped by exactly what its requests cost
(the cost of each kind is taken from one request before counting): metering exact, or
the run fails. ``--floor`` adds the bare aiohttp proxy (``bench/floor.py``) as a third
column. Run by hand (it takes some minutes), never by ``make test``; see
docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench import procs as p
from bench.load import chat_body
from bench.verify import _completion, _stream

ROOT = Path(__file__).resolve().parent.parent
BALANCE = 1_000_000_000_000
CHUNKS = 20
LONG_CHUNKS = 1000
START_TIMEOUT = 180.0  # a gateway under valgrind takes a while to import and start
TOTALS = re.compile(rb"^totals:\s*(\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Scenario:
    name: str
    stream: bool
    chunks: int
    concurrency: int
    requests: int
    warmup: int
    trickle: bool = False

    def model(self, floor: bool) -> str:
        """The gateway's agent, or the upstream's model for the floor (which forwards)."""
        if self.trickle:
            return p.TRICKLE_MODEL if floor else "bench-trickle"
        if self.chunks == LONG_CHUNKS:
            return f"mock-chunks-{LONG_CHUNKS}" if floor else "bench-long"
        return "mock" if floor else "bench"


def scenarios(requests: int, long_requests: int) -> list[Scenario]:
    return [
        Scenario("ns-c1", False, 0, 1, requests, 20),
        Scenario("ns-c4", False, 0, 4, requests, 20),
        Scenario("s20-c4", True, CHUNKS, 4, requests, 20),
        Scenario("s1000-c1", True, LONG_CHUNKS, 1, long_requests, 3),
        Scenario("t20-c4", True, CHUNKS, 4, requests, 8, trickle=True),
    ]


@dataclass
class Subject:
    """One process counted: a gateway at some revision, or the floor."""

    label: str
    port: int = 0
    pid: int = 0
    key_id: str = ""
    secret: str = ""
    counts: dict[str, float] = field(default_factory=dict)  # scenario -> instr per request
    cost: dict[str, int] = field(default_factory=dict)  # kind -> credits per request
    billed_requests: dict[str, int] = field(default_factory=dict)

    @property
    def is_floor(self) -> bool:
        return self.label == "floor"

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.secret:
            headers["Authorization"] = f"Bearer {self.secret}"
        return headers


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--base", default="HEAD~1", help="revision to compare against")
    parser.add_argument("--change", default=None, help="revision (default: the work tree)")
    parser.add_argument("--floor", action="store_true", help="count the floor too")
    parser.add_argument("--no-base", action="store_true", help="count the change alone")
    parser.add_argument("--requests", type=int, default=300, help="per short scenario")
    parser.add_argument("--long-requests", type=int, default=30, help="1,000-chunk streams")
    parser.add_argument(
        "--only", default="", help="comma-separated scenarios (ns-c1,ns-c4,s20-c4,s1000-c1,t20-c4)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="counts per scenario and gateway (median kept)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    children = p.Processes()
    return p.supervise("instructions", args.keep, lambda: _run(args, children), children)


def _export(rev: str, dest: Path) -> Path:
    """The tree of ``rev`` (``gateway`` and ``plugins``) unpacked under ``dest``, with
    this work tree's ``bench`` (the harness's own gateway starter)."""
    dest.mkdir(parents=True)
    shutil.copytree(ROOT / "bench", dest / "bench", ignore=shutil.ignore_patterns("results"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "gateway", "plugins"],
        check=True,
        capture_output=True,
    ).stdout
    with tempfile.TemporaryFile() as tmp:
        tmp.write(archive)
        tmp.seek(0)
        with tarfile.open(fileobj=tmp) as tar:
            tar.extractall(dest, filter="data")
    return dest


def _describe(rev: str | None) -> str:
    if rev is None:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--", "gateway", "plugins")
        return f"{head}{'+' if dirty else ''} (work tree)"
    return _git("rev-parse", "--short", rev)


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True)
    return done.stdout.decode().strip()


def _valgrind(workdir: Path, label: str) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={workdir / f'callgrind.{label}.%p'}",
    ]


def _start_redis(procs: p.Processes) -> str:
    port = p.free_port()
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(procs.workdir)]
    proc = procs.start("redis", argv, stdout_to_log=True)
    for _ in range(100):
        if proc.poll() is not None:
            raise p.BenchError(f"redis-server exited:\n{procs.log_tail('redis')}")
        done = subprocess.run(
            ["redis-cli", "-p", str(port), "ping"], capture_output=True, check=False
        )
        if done.stdout.strip() == b"PONG":
            return f"redis://127.0.0.1:{port}/0"
        time.sleep(0.1)
    raise p.BenchError("redis-server did not answer")


def _start_subject(
    procs: p.Processes, subject: Subject, tree: Path | None, config: Path, argv: list[str]
) -> None:
    env = dict(os.environ)
    env.pop("GATEWAY_REDIS_URL", None)
    if tree is not None:  # ahead of the editable install of this work tree
        env["PYTHONPATH"] = f"{tree}{os.pathsep}{tree / 'plugins'}"
    subject.port = p.free_port()
    full = [*_valgrind(procs.workdir, subject.label), sys.executable, *argv]
    full += ["--port", str(subject.port)]
    # ``python -m`` puts the working directory first on sys.path, ahead of PYTHONPATH:
    # run in the tree itself, or the work tree's gateway would be the one counted.
    proc = procs.start(subject.label, full, env=env, cwd=tree or ROOT)
    ready = "/v1/models" if subject.is_floor else "/readyz"
    procs.wait_http(subject.label, proc, f"http://127.0.0.1:{subject.port}{ready}", START_TIMEOUT)
    subject.pid = proc.pid


def _control(pid: int, *args: str) -> None:
    """``callgrind_control`` on ``pid``; the process must wake to answer, so poke it."""
    done = subprocess.run(
        ["callgrind_control", *args, str(pid)], capture_output=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise p.BenchError(f"callgrind_control {' '.join(args)} {pid}: {done.stderr.decode()}")


def _dumped(workdir: Path, label: str, pid: int, seen: set[Path]) -> int:
    """Instructions in the newest dump of ``pid`` not read before."""
    for _ in range(100):
        files = set(workdir.glob(f"callgrind.{label}.{pid}.*")) - seen
        files = {f for f in files if f.stat().st_size > 0}
        if files:
            newest = max(files, key=lambda f: f.stat().st_mtime_ns)
            time.sleep(0.2)  # let callgrind finish writing it
            match = TOTALS.search(newest.read_bytes())
            if match:
                seen.add(newest)
                return int(match.group(1))
        time.sleep(0.2)
    raise p.BenchError(f"no callgrind dump from {label} ({pid})")


async def _one(session: aiohttp.ClientSession, subject: Subject, sc: Scenario) -> None:
    body = chat_body(sc.model(subject.is_floor), sc.stream)
    async with session.post(subject.url(), data=body, headers=subject.headers()) as resp:
        raw = await resp.read()
        if resp.status != 200:
            raise p.BenchError(f"{subject.label} {sc.name}: HTTP {resp.status}: {raw[:300]!r}")
    try:
        if sc.stream:
            _stream(raw, sc.chunks)
        else:
            _completion(raw)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise p.BenchError(f"{subject.label} {sc.name}: unexpected answer ({exc})") from None


async def _load(subject: Subject, sc: Scenario, count: int) -> None:
    """``count`` requests of ``sc`` at its concurrency, every answer checked."""
    timeout = aiohttp.ClientTimeout(total=600)
    connector = aiohttp.TCPConnector(limit=sc.concurrency)
    left = count
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await _one(session, subject, sc)

        await asyncio.gather(*(worker() for _ in range(sc.concurrency)))
    if not subject.is_floor:
        kind = _kind(sc)
        subject.billed_requests[kind] = subject.billed_requests.get(kind, 0) + count


def _kind(sc: Scenario) -> str:
    if sc.trickle:
        return f"trickle{sc.chunks}"
    return f"stream{sc.chunks}" if sc.stream else "completion"


def _count(procs: p.Processes, subject: Subject, sc: Scenario, seen: set[Path]) -> float:
    asyncio.run(_load(subject, sc, sc.warmup))
    _control(subject.pid, "--instr=on")
    asyncio.run(_load(subject, sc, sc.requests))
    _control(subject.pid, "--instr=off")
    _control(subject.pid, "--dump")
    total = _dumped(procs.workdir, subject.label, subject.pid, seen)
    return total / sc.requests


def _settled(config: Path, redis_url: str, key_id: str, wait: float = 60.0) -> int:
    """The key's balance once nothing is held any more and it stopped moving."""
    deadline = time.monotonic() + wait
    last: tuple[int, int] | None = None
    while time.monotonic() < deadline:
        now = p.account(config, redis_url, key_id)
        if now == last and now[1] == 0:
            return now[0]
        last = now
        time.sleep(1.0)
    raise p.BenchError(f"key {key_id}: the balance did not settle ({last})")


def _costs(config: Path, redis_url: str, subject: Subject, kinds: list[Scenario]) -> None:
    """Credits per request of each kind, from one request each (uncounted)."""
    for sc in kinds:
        kind = _kind(sc)
        if kind in subject.cost:
            continue
        before = _settled(config, redis_url, subject.key_id)
        asyncio.run(_load(subject, sc, 1))
        subject.cost[kind] = before - _settled(config, redis_url, subject.key_id)
        if subject.cost[kind] <= 0:
            raise p.BenchError(f"{subject.label}: a {kind} request was not billed")


def _check_billing(config: Path, redis_url: str, subject: Subject, start: int) -> str:
    billed = start - _settled(config, redis_url, subject.key_id)
    expected = sum(subject.cost[k] * n for k, n in subject.billed_requests.items())
    requests = sum(subject.billed_requests.values())
    if billed != expected:
        raise p.BenchError(
            f"{subject.label}: billed {billed} credits for {requests} requests, "
            f"expected {expected}: metering is not exact"
        )
    return f"{subject.label}: {billed} credits for {requests} requests, exactly as expected"


def _run(args: argparse.Namespace, procs: p.Processes) -> int:
    chosen = scenarios(args.requests, args.long_requests)
    if args.only:
        names = set(args.only.split(","))
        chosen = [sc for sc in chosen if sc.name in names]
    redis_url = os.environ.get("GATEWAY_TEST_REDIS_URL") or _start_redis(procs)
    mock_port, _ = p.start_mock(procs, CHUNKS)
    config = p.write_config(procs, mock_port, redis_url, LONG_CHUNKS)
    trees: list[tuple[Subject, Path | None]] = []
    if not args.no_base:
        label = f"base-{_describe(args.base)}"
        trees.append((Subject(label), _export(args.base, procs.workdir / "base")))
    change_tree = None if args.change is None else _export(args.change, procs.workdir / "change")
    trees.append((Subject(f"change-{_describe(args.change).split()[0]}"), change_tree))
    subjects = [s for s, _ in trees]
    starts: dict[str, int] = {}
    for subject, tree in trees:
        subject.key_id, subject.secret = p.create_key(config, redis_url, BALANCE)
        starts[subject.label] = BALANCE
        argv = ["-m", "bench.counted_gateway", "serve", "--config", str(config)]
        _start_subject(procs, subject, tree, config, argv)
        _costs(config, redis_url, subject, chosen)
    if args.floor:
        floor = Subject("floor")
        upstream = f"http://127.0.0.1:{mock_port}/v1/chat/completions"
        argv = ["-m", "bench.floor", "--upstream", upstream]
        _start_subject(procs, floor, None, config, argv)
        subjects.append(floor)
    print(f"instructions: {', '.join(s.label for s in subjects)}", flush=True)
    seen: set[Path] = set()
    for i, sc in enumerate(chosen):
        samples: dict[str, list[float]] = {s.label: [] for s in subjects}
        for r in range(args.repeat):  # ABBA...: neither gateway always goes first
            order = subjects if (i + r) % 2 == 0 else list(reversed(subjects))
            for subject in order:
                samples[subject.label].append(_count(procs, subject, sc, seen))
                count = samples[subject.label][-1]
                print(f"  {sc.name:9} {subject.label:24} {count:>14,.0f}", flush=True)
        for subject in subjects:
            subject.counts[sc.name] = statistics.median(samples[subject.label])
    for subject in subjects:
        if not subject.is_floor:
            print(_check_billing(config, redis_url, subject, starts[subject.label]))
    print(_table(subjects, chosen))
    return 0


def _table(subjects: list[Subject], chosen: list[Scenario]) -> str:
    head = ["scenario", *(s.label for s in subjects)]
    gateways = [s for s in subjects if not s.is_floor]
    floor = next((s for s in subjects if s.is_floor), None)
    if len(gateways) == 2:
        head.append("change")
    if floor is not None:
        head += [f"{g.label} / floor" for g in gateways]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for sc in chosen:
        row = [sc.name, *(f"{s.counts[sc.name] / 1000:,.0f}k" for s in subjects)]
        if len(gateways) == 2:
            base, change = (g.counts[sc.name] for g in gateways)
            row.append(f"{(change - base) / base:+.1%}")
        if floor is not None:
            row += [f"{g.counts[sc.name] / floor.counts[sc.name]:.2f}x" for g in gateways]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
