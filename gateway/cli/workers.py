"""``gateway serve --workers N``: N worker processes sharing one port, supervised.

Each worker is a whole ``gateway serve`` (its own event loop, backends and
configuration watcher) bound to the same port with SO_REUSEPORT, so the kernel
spreads connections among them. The supervisor binds nothing: it restarts a
worker that dies, forwards SIGHUP (reload) and SIGTERM/SIGINT (drain; a second
one hurries it) to every worker, and exits when they all have. Metrics of all
workers are collected through ``PROMETHEUS_MULTIPROC_DIR``, which it sets to a
fresh folder (or wipes, when the operator sets it) before starting them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from gateway import metrics

log = logging.getLogger("gateway.workers")

RESTART_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)  # seconds before restarting a worker, by attempt
STABLE_AFTER = 30.0  # a worker that ran this long resets its restart backoff


def metrics_folder() -> str:
    """An empty folder for multi-process metrics, shared with the workers."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        path = Path(folder)
        if path.exists():
            for child in path.iterdir():
                if child.is_file():
                    child.unlink()
        path.mkdir(parents=True, exist_ok=True)
        return folder
    return tempfile.mkdtemp(prefix="gateway-metrics-")


class Supervisor:
    def __init__(self, command: list[str], count: int) -> None:
        self._command = command
        self._count = count
        self._workers: dict[int, asyncio.subprocess.Process] = {}  # slot -> process
        self._stopping = False

    async def run(self) -> int:
        ours = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
        folder = metrics_folder()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder  # for the workers, and mark_process_dead
        env = dict(os.environ)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_stop(sig: signal.Signals) -> None:
            self._stopping = True
            stop.set()
            self._forward(sig)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
        slots = [asyncio.create_task(self._keep(slot, env)) for slot in range(self._count)]
        await stop.wait()
        codes = await asyncio.gather(*slots)
        if ours:
            shutil.rmtree(folder, ignore_errors=True)
        log.info("all workers stopped")
        return 0 if all(code == 0 for code in codes) else 1

    def _forward(self, sig: signal.Signals) -> None:
        for process in self._workers.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)

    async def _keep(self, slot: int, env: dict[str, str]) -> int:
        """Run worker ``slot`` until shutdown, restarting it whenever it dies."""
        attempt = 0
        while True:
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(*self._command, env=env)
            self._workers[slot] = process
            log.info("worker %d started (pid %d)", slot, process.pid)
            code = await process.wait()
            metrics.mark_process_dead(process.pid)  # its live gauges leave the totals
            if self._stopping:
                # A worker still starting when the signal came dies of it, with nothing to drain.
                return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code
            if time.monotonic() - started > STABLE_AFTER:
                attempt = 0
            delay = RESTART_BACKOFF[min(attempt, len(RESTART_BACKOFF) - 1)]
            attempt += 1
            log.error("worker %d (pid %d) exited with %s; restarting in %g s",
                      slot, process.pid, code, delay)  # fmt: skip
            await asyncio.sleep(delay)
            if self._stopping:
                return 0


def worker_command(config: str, host: str, port: int, log_level: str, log_format: str) -> list[str]:
    return [
        sys.executable, "-m", "gateway", "serve", "--config", config,
        "--host", host, "--port", str(port), "--log-level", log_level,
        "--log-format", log_format, "--workers", "1", "--reuse-port",
        "--supervisor", str(os.getpid()),
    ]  # fmt: skip
