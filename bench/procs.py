"""Child processes of the benchmark: the mock upstream, the gateway, the key CLI.

Every process started here is registered with a ``Processes`` and stopped by
``Processes.stop_all`` (SIGTERM, then SIGKILL), which ``supervise`` calls in a
``finally`` so that Ctrl-C, SIGTERM or an error leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

DEMO_KEY = re.compile(r"Demo key \([^)]*\): (\S+)")
PRICE_INPUT = 0.15
PRICE_OUTPUT = 0.6
# The upstream model of the agent ``bench-trickle``: a stream whose frames come 5 ms
# apart (``bench.mock_upstream``), each in a read of its own, even under callgrind.
TRICKLE_MODEL = "mock-trickle-5"


class BenchError(RuntimeError):
    """The benchmark cannot go on (a process failed, a request was refused...)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_kib(pid: int) -> dict[str, int] | None:
    """VmRSS and VmHWM (peak) of ``pid`` in KiB, from /proc (Linux only)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.MULTILINE))
    return {k: int(v) for k, v in found.items()}


def vm_rss(pid: int) -> int | None:
    """Resident memory of ``pid`` in KiB (Linux only)."""
    found = rss_kib(pid)
    return found["VmRSS"] if found else None


def fd_count(pid: int) -> int | None:
    """Open file descriptors of ``pid``, from /proc (Linux only)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def cpu_ticks(pid: int) -> int | None:
    """User + system CPU time of ``pid`` in clock ticks, from /proc (Linux only)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])


def machine_busy(interval: float = 0.5) -> float | None:
    """The share of all CPUs busy over ``interval`` seconds, from /proc/stat (Linux only)."""

    def sample() -> tuple[int, int] | None:
        try:
            first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        except (OSError, IndexError):
            return None
        values = [int(v) for v in first]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    a = sample()
    time.sleep(interval)
    b = sample()
    if a is None or b is None or b[0] == a[0]:
        return None
    return 1 - (b[1] - a[1]) / (b[0] - a[0])


def quiesce(pids: list[int], timeout: float = 10.0, interval: float = 0.2) -> float:
    """Wait until ``pids`` are idle (at most 1 tick of CPU per ``interval``): a cell must
    not pay for the previous cell's leftovers (settlements still being written...).
    Returns the seconds waited."""
    start = time.monotonic()
    before = [cpu_ticks(pid) for pid in pids]
    while time.monotonic() - start < timeout:
        time.sleep(interval)
        now = [cpu_ticks(pid) for pid in pids]
        if all(a is None or b is None or b - a <= 1 for a, b in zip(before, now, strict=True)):
            break
        before = now
    return time.monotonic() - start


@dataclass
class Processes:
    """The children we started, so that all of them are stopped at the end."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-")))
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        *,
        cwd: Path | None = None,
        stdout_to_log: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv``; its stderr (and stdout if ``stdout_to_log``, else a pipe) goes
        to ``<name>.log`` in the work dir."""
        log = (self.workdir / f"{name}.log").open("wb")
        self.logs.append(log)
        proc = subprocess.Popen(
            argv,
            stdout=log if stdout_to_log else subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=cwd,
            start_new_session=True,  # Ctrl-C reaches us only; we stop them in order
        )
        self.children.append((name, proc))
        return proc

    def wait_http(
        self, name: str, proc: subprocess.Popen[bytes], url: str, timeout: float = 20.0
    ) -> None:
        """Wait until ``url`` answers 200; a child that dies meanwhile shows its log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(
                    f"{name} exited with status {proc.returncode} while starting; "
                    f"last log lines:\n{self.log_tail(name)}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise BenchError(f"{name} did not answer {url} within {timeout:.0f} s")

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.workdir / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        for name, proc in self.children:
            if proc.poll() is not None:
                raise BenchError(
                    f"{name} (pid {proc.pid}) died with status {proc.returncode}; "
                    f"last log lines:\n{self.log_tail(name)}"
                )

    def stop(self, name: str, timeout: float = 15) -> None:
        """Stop the child ``name`` and forget it (``check_alive`` is for the others)."""
        for i, (child, proc) in enumerate(self.children):
            if child == name:
                _stop(proc, timeout)
                del self.children[i]
                return

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM every child (gateway first: it drains settlements), SIGKILL stragglers."""
        codes = {name: _stop(proc, 15) for name, proc in reversed(self.children)}
        self.children.clear()
        for log in self.logs:
            log.close()
        return codes


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout`` s; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def supervise(
    prog: str,
    keep: bool,
    run: Callable[[], int],
    children: Processes,
    others: Processes | None = None,
) -> int:
    """Run a benchmark's body; whatever happens (an error, SIGTERM, Ctrl-C) stop
    ``others`` (whose end is not news), then ``children``, saying which of them ended
    on its own or badly; the work dir is removed unless ``keep`` or the run failed."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    status = 1
    try:
        status = run()
    except BenchError as exc:
        print(f"\n{prog}: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        status = 130
    finally:
        if others is not None:
            others.stop_all()
        alive = [name for name, proc in children.children if proc.poll() is None]
        for name, code in children.stop_all().items():
            if code not in (0, -signal.SIGTERM) or name not in alive:
                print(f"{prog}: {name} ended with status {code}", file=sys.stderr)
        if keep or status != 0:
            print(f"{prog}: logs and config kept in {children.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(children.workdir, ignore_errors=True)
    return status


def start_mock(procs: Processes, chunks: int) -> tuple[int, int]:
    """Start the mock upstream; returns (port, pid)."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.mock_upstream", "--port", str(port)]
    proc = procs.start("mock", [*argv, "--chunks", str(chunks)])
    procs.wait_http("mock", proc, f"http://127.0.0.1:{port}/v1/models")
    return port, proc.pid


def write_config(
    procs: Processes,
    mock_port: int,
    redis_url: str,
    long_chunks: int,
    *,
    upstream_connections: int = 1000,
    more_routes: dict[str, str] | None = None,
    extra: str = "",
) -> Path:
    """The bench's gateway.yaml. ``more_routes`` maps more agents to upstream models
    (priced alike); ``extra`` is YAML appended (more top-level sections)."""
    backend = f"http://127.0.0.1:{mock_port}/v1"
    pricing = f"{{input: {PRICE_INPUT}, output: {PRICE_OUTPUT}}}"
    text = f"""\
listen: {{host: 127.0.0.1, port: 8080}}
redis: {{url: "{redis_url}"}}
backends:
  mock:
    type: openai_chat
    base_url: {backend}
    max_connections: {upstream_connections}
routes:
  bench:
    backend: mock
    model: mock
    pricing: {pricing}
  bench-long:
    backend: mock
    model: mock-chunks-{long_chunks}
    pricing: {pricing}
  bench-trickle:
    backend: mock
    model: {TRICKLE_MODEL}
    pricing: {pricing}
"""
    for agent, model in (more_routes or {}).items():
        text += f"  {agent}:\n    backend: mock\n    model: {model}\n    pricing: {pricing}\n"
    path = procs.workdir / "gateway.yaml"
    path.write_text(text + extra)
    return path


def start_gateway(
    procs: Processes, config: Path, redis_url: str, embedded: bool, *, name: str = "gateway"
) -> tuple[int, int, str | None]:
    """Start ``gateway serve``; returns (port, pid, demo key or None)."""
    port = free_port()
    env = dict(os.environ)
    env.pop("GATEWAY_REDIS_URL", None)  # the config file says which store
    if not embedded:
        env["GATEWAY_REDIS_URL"] = redis_url
    argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
    proc = procs.start(name, [*argv, "--port", str(port)], env=env)
    procs.wait_http(name, proc, f"http://127.0.0.1:{port}/readyz")
    demo: str | None = None
    if embedded:
        demo = _read_demo_key(proc)
    return port, proc.pid, demo


def _read_demo_key(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode(errors="replace")
        if not line:
            break
        match = DEMO_KEY.search(line)
        if match:
            return match.group(1)
    raise BenchError("the gateway did not print a demo key on stdout")


def _cli(config: Path, redis_url: str, *args: str) -> Any:
    env = {**os.environ, "GATEWAY_REDIS_URL": redis_url}
    argv = [sys.executable, "-m", "gateway", *args, "--config", str(config), "--json"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise BenchError(f"`gateway {' '.join(args)}` failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def create_key(config: Path, redis_url: str, balance: int, *options: str) -> tuple[str, str]:
    """A key with ``balance`` credits (and ``options`` of `keys create`, e.g. limits), via
    the CLI; returns (id, secret)."""
    argv = ["keys", "create", "--name", "bench", "--balance", str(balance), *options]
    made = _cli(config, redis_url, *argv)
    return str(made["id"]), str(made["key"])


def account(config: Path, redis_url: str, key_id: str) -> tuple[int, int]:
    """(balance, credits held by requests in flight) of a key, via the CLI."""
    shown = _cli(config, redis_url, "balance", "show", key_id)
    return int(shown["balance"]), int(shown["held"])
