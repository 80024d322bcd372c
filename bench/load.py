"""Load generators: ``wrk`` when it is on PATH, else a Python (aiohttp) fallback.

Both run a closed loop of ``concurrency`` connections for ``duration`` seconds
against one ``Target`` and return a ``LoadResult``: completed requests,
requests/s, p50/p99 of the full-response latency, and errors (non-2xx answers
and socket errors). ``measure_ttfb`` times, at concurrency 1, the first SSE
frame and the first content token of a stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson

T = TypeVar("T")
WRK_MARK = "BENCH_JSON "


@dataclass(frozen=True)
class Target:
    url: str
    headers: dict[str, str]
    body: bytes


def chat_body(model: str, stream: bool) -> bytes:
    """A one-message Chat Completions request; a stream asks for its usage chunk."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Hello, benchmark!"}],
    }
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return orjson.dumps(body)


@dataclass
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    non_2xx: int = 0
    socket_errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    # CPU time per completed request, in microseconds, of each server process (from /proc)
    cpu_us: dict[str, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def wrk_path() -> str | None:
    return shutil.which("wrk")


# --- wrk -----------------------------------------------------------------------------------

_LUA = """\
wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{mark}{{"requests":%.0f,"duration_us":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,' ..
    '"status":%.0f,"timeout":%.0f,"p50_us":%.1f,"p99_us":%.1f,"mean_us":%.1f,"max_us":%.1f}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
"""


def _lua_script(target: Target, workdir: Path) -> Path:
    body = target.body.decode()
    if "]==]" in body:
        raise ValueError("request body cannot be quoted for Lua")
    headers = "\n".join(
        f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in target.headers.items()
    )
    digest = hashlib.sha1(target.url.encode() + target.body + str(target.headers).encode())
    path = workdir / f"wrk-{digest.hexdigest()[:12]}.lua"
    path.write_text(_LUA.format(body=body, headers=headers, mark=WRK_MARK))
    return path


def run_wrk(target: Target, concurrency: int, duration: int, workdir: Path) -> LoadResult:
    """One wrk run (one thread); figures from its done() hook."""
    script = _lua_script(target, workdir)
    argv = [
        wrk_path() or "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, duration)}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        target.url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith(WRK_MARK)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    data = json.loads(line[len(WRK_MARK) :])
    non_2xx = int(data["status"])
    # wrk counts 3xx as success; the text report's "Non-2xx or 3xx" line is the same figure.
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    if match:
        non_2xx = max(non_2xx, int(match.group(1)))
    return LoadResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        non_2xx=non_2xx,
        socket_errors=sum(int(data[k]) for k in ("connect", "read", "write", "timeout")),
    )


# --- Python fallback -----------------------------------------------------------------------


async def _python_load(target: Target, concurrency: int, duration: float) -> LoadResult:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    socket_errors = 0
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        deadline = start + duration

        async def worker() -> None:
            nonlocal socket_errors
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    async with session.post(
                        target.url, data=target.body, headers=target.headers
                    ) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError):
                    socket_errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                statuses[str(status)] = statuses.get(str(status), 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    return LoadResult(
        requests=len(ms),
        seconds=elapsed,
        p50_ms=percentile(ms, 50),
        p99_ms=percentile(ms, 99),
        mean_ms=sum(ms) / len(ms) if ms else 0.0,
        max_ms=ms[-1] if ms else 0.0,
        non_2xx=sum(n for s, n in statuses.items() if not s.startswith("2")),
        socket_errors=socket_errors,
        statuses=statuses,
    )


def run_python(target: Target, concurrency: int, duration: float) -> LoadResult:
    return run_async(_python_load(target, concurrency, duration))


def run_load(
    target: Target, concurrency: int, duration: float, workdir: Path, use_wrk: bool
) -> LoadResult:
    if use_wrk:
        return run_wrk(target, concurrency, round(duration), workdir)
    return run_python(target, concurrency, duration)


# --- time to first byte / first token (concurrency 1) --------------------------------------


@dataclass
class TtfbResult:
    requests: int
    errors: int
    first_frame_p50_ms: float
    first_frame_p99_ms: float
    first_token_p50_ms: float
    first_token_p99_ms: float


def _has_content(frame: bytes) -> bool:
    data = frame.removeprefix(b"data: ")
    if data == b"[DONE]":
        return False
    try:
        chunk = orjson.loads(data)
        return bool(chunk["choices"][0]["delta"].get("content"))
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return False


async def _one_ttfb(session: aiohttp.ClientSession, target: Target) -> tuple[float, float] | None:
    """(first frame, first content token) in seconds, or None on error."""
    t0 = time.perf_counter()
    first_frame = first_token = 0.0
    buffer = b""
    async with session.post(target.url, data=target.body, headers=target.headers) as resp:
        if resp.status != 200:
            await resp.read()
            return None
        while True:
            data = await resp.content.readany()
            if not data:
                break
            if first_token:
                continue  # drain the rest so that the connection is reused
            now = time.perf_counter()
            buffer += data
            *frames, buffer = buffer.split(b"\n\n")
            for frame in frames:
                if not first_frame and frame.startswith(b"data: "):
                    first_frame = now - t0
                if _has_content(frame):
                    first_token = now - t0
                    break
    if not first_token:
        return None
    return first_frame, first_token


async def _ttfb(target: Target, duration: float) -> TtfbResult:
    frames: list[float] = []
    tokens: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        deadline = time.perf_counter() + duration
        while time.perf_counter() < deadline:
            try:
                got = await _one_ttfb(session, target)
            except (aiohttp.ClientError, TimeoutError):
                got = None
            if got is None:
                errors += 1
                continue
            frames.append(got[0] * 1000)
            tokens.append(got[1] * 1000)
    frames.sort()
    tokens.sort()
    return TtfbResult(
        requests=len(frames),
        errors=errors,
        first_frame_p50_ms=percentile(frames, 50),
        first_frame_p99_ms=percentile(frames, 99),
        first_token_p50_ms=percentile(tokens, 50),
        first_token_p99_ms=percentile(tokens, 99),
    )


def measure_ttfb(target: Target, duration: float) -> TtfbResult:
    return run_async(_ttfb(target, duration))
