"""The peers of ``python -m bench --peers``: the LiteLLM proxy, the Portkey gateway, the
floor (``bench/floor.py``: a bare aiohttp proxy, the gateway's HTTP stack alone), and
``floor+redis``, the floor with one Redis round trip a request (what admitting a request
in Redis adds at the least).

Each is installed once into ``.bench-peers/`` from its lock in ``requirements/`` (LiteLLM
into a throwaway virtual environment from ``litellm.txt``, Portkey into a throwaway npm
folder from ``portkey/package-lock.json``; later runs reuse them),
started on loopback against the bench's mock upstream with a configuration
equivalent to the gateway's, and loaded by the same load generator. A peer that
cannot be installed or started is reported absent, with why: it never stops the
bench. Their figures: ``docs/performance.md``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench import procs as p

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("BENCH_PEERS_DIR", ROOT / ".bench-peers"))
LOCKS = ROOT / "requirements"
LITELLM_LOCK = LOCKS / "litellm.txt"
LITELLM_VERSION = re.findall(r"(?m)^litellm==(\S+)", LITELLM_LOCK.read_text())[0]
PORTKEY_LOCK = LOCKS / "portkey"
PORTKEY_VERSION = json.loads((PORTKEY_LOCK / "package.json").read_text())["dependencies"][
    "@portkey-ai/gateway"
]
MASTER_KEY = "sk-bench-master"
UPSTREAM_KEY = "sk-mock"
LITELLM_NOTE = (
    "one worker, master key only: its virtual keys and budgets need Postgres and Prisma, "
    "so it does no per-key admission or settlement (a lighter load than the gateway's)"
)
FLOOR_NOTE = (
    "a bare aiohttp proxy (bench/floor.py): the gateway's server, client and loop with none "
    "of its work; what the gateway costs beyond it is its own"
)
FLOOR_REDIS_NOTE = (
    "the floor plus one Redis round trip a request before forwarding it (bench/floor.py "
    "--redis): the least a design that admits each request in Redis first can add"
)
PORTKEY_NOTE = (
    "its streaming answers 500 as installed (a known bug, Portkey-AI/gateway #1389 and "
    "#1550); once fixed it waits 25 ms before the first streamed event by design"
)
# Portkey's server listens on every interface and has no option for it: bind loopback.
LOOPBACK_JS = """\
const net = require("net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (port, host, ...rest) {
  if (typeof port === "number" && host === undefined) host = "127.0.0.1";
  return listen.call(this, port, host, ...rest);
};
"""


class PeerError(RuntimeError):
    """A peer cannot be installed or started."""


@dataclass
class Peer:
    name: str
    version: str
    note: str
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    by_agent: bool = False  # requests name the gateway's agent (else the upstream model)
    proc: subprocess.Popen[bytes] | None = None
    absent: str | None = None  # why it is not measured
    problems: list[str] = field(default_factory=list)
    idle_rss_kib: dict[str, int] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        if self.absent is not None:
            return False
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            self.absent = f"died with status {code} during the run"
            print(f"bench: {self.name} {self.absent}; its remaining cells are skipped")
            return False
        return True


def _run_logged(name: str, argv: list[str], timeout: float, cwd: Path | None = None) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / f"{name}.log"
    try:
        with log.open("wb") as out:
            done = subprocess.run(argv, stdout=out, stderr=out, cwd=cwd, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerError(f"`{' '.join(argv)}` failed: {exc}") from None
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
        raise PeerError(f"`{' '.join(argv)}` exited with {done.returncode} (log {log}):\n{tail}")


def install_litellm() -> Path:
    """``litellm[proxy]`` in CACHE/litellm (installed once); returns its ``litellm`` script."""
    venv = CACHE / "litellm"
    exe, marker = venv / "bin" / "litellm", venv / ".bench-installed"
    lock = LITELLM_LOCK.read_text()
    if exe.exists() and marker.exists() and marker.read_text() == lock:
        return exe
    print(f"bench: installing litellm[proxy]=={LITELLM_VERSION} from {LITELLM_LOCK} into {venv}")
    _run_logged("litellm-install", [sys.executable, "-m", "venv", "--clear", str(venv)], 300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--require-hashes"]
    _run_logged("litellm-install", [*pip, "--no-deps", "-r", str(LITELLM_LOCK)], 1800)
    marker.write_text(lock)
    return exe


def install_portkey() -> Path:
    """``@portkey-ai/gateway`` in CACHE/portkey (installed once); returns its server script."""
    folder = CACHE / "portkey"
    package = folder / "node_modules" / "@portkey-ai" / "gateway"
    script = package / "build" / "start-server.js"
    try:
        installed = json.loads((package / "package.json").read_text()).get("version")
    except (OSError, ValueError):
        installed = None
    if script.exists() and installed == PORTKEY_VERSION:
        return script
    npm = shutil.which("npm")
    if npm is None:
        raise PeerError("npm not found (apt-get install nodejs npm; make bench-peers does as root)")
    print(
        f"bench: installing @portkey-ai/gateway@{PORTKEY_VERSION} from {PORTKEY_LOCK} into {folder}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(PORTKEY_LOCK / name, folder / name)
    _run_logged("portkey-install", [npm, "ci", "--no-audit", "--no-fund"], 900, folder)
    return script


def _start(
    procs: p.Processes, name: str, argv: list[str], health: str, env: dict[str, str], timeout: float
) -> subprocess.Popen[bytes]:
    """``Processes.start`` with stdout to the log too (these peers log a lot there)."""
    proc = procs.start(name, argv, env, cwd=procs.workdir, stdout_to_log=True)
    procs.wait_http(name, proc, health, timeout)
    return proc


def _litellm_config(mock_port: int, long_chunks: int) -> str:
    base = f"http://127.0.0.1:{mock_port}/v1"
    costs = f"{{input_cost_per_token: {p.PRICE_INPUT / 1e6!r}, "
    costs += f"output_cost_per_token: {p.PRICE_OUTPUT / 1e6!r}}}"
    text = "model_list:\n"
    for agent, model in (("bench", "mock"), ("bench-long", f"mock-chunks-{long_chunks}")):
        text += f"""\
  - model_name: {agent}
    litellm_params: {{model: openai/{model}, api_base: "{base}", api_key: {UPSTREAM_KEY}}}
    model_info: {costs}
"""
    return text + f"general_settings: {{master_key: {MASTER_KEY}}}\n"


def start_litellm(procs: p.Processes, peer: Peer, mock_port: int, long_chunks: int) -> None:
    exe = install_litellm()
    config = procs.workdir / "litellm.yaml"
    config.write_text(_litellm_config(mock_port, long_chunks))
    port = p.free_port()
    env = dict(os.environ)
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False", LITELLM_LOG="ERROR")
    # It cuts a stream after 100 identical chunks (the mock's are all "tok "): not at 1,000.
    env["REPEATED_STREAMING_CHUNK_LIMIT"] = str(10**9)
    argv = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    health = f"http://127.0.0.1:{port}/health/liveliness"
    peer.proc = _start(procs, "litellm", [*argv, "--num_workers", "1"], health, env, 180)
    peer.url = f"http://127.0.0.1:{port}/v1/chat/completions"
    peer.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {MASTER_KEY}"}


def start_floor(
    procs: p.Processes, peer: Peer, mock_port: int, redis_url: str | None = None
) -> None:
    port = p.free_port()
    upstream = f"http://127.0.0.1:{mock_port}/v1/chat/completions"
    argv = [sys.executable, "-m", "bench.floor", "--port", str(port), "--upstream", upstream]
    if redis_url is not None:
        argv += ["--redis", redis_url]
    health = f"http://127.0.0.1:{port}/v1/models"
    peer.proc = _start(procs, peer.name, argv, health, dict(os.environ), 30)
    peer.url = f"http://127.0.0.1:{port}/v1/chat/completions"
    peer.headers = {"Content-Type": "application/json"}


def start_portkey(procs: p.Processes, peer: Peer, mock_port: int) -> None:
    script = install_portkey()
    node = shutil.which("node")
    if node is None:
        raise PeerError("node not found (apt-get install nodejs)")
    preload = CACHE / "portkey" / "loopback.cjs"
    preload.write_text(LOOPBACK_JS)
    port = p.free_port()
    argv = [node, "-r", str(preload), str(script), f"--port={port}", "--headless"]
    peer.proc = _start(procs, "portkey", argv, f"http://127.0.0.1:{port}/", dict(os.environ), 60)
    peer.url = f"http://127.0.0.1:{port}/v1/chat/completions"
    peer.headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {UPSTREAM_KEY}",
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": f"http://127.0.0.1:{mock_port}/v1",
    }


def start_peers(
    procs: p.Processes, mock_port: int, long_chunks: int, redis_url: str | None
) -> list[Peer]:
    """Every peer, started or marked absent with the reason (printed); ``floor+redis``
    needs ``redis_url``."""

    def start_floor_redis(peer: Peer) -> None:
        if redis_url is None:
            raise PeerError("no Redis in this run (the embedded store)")
        start_floor(procs, peer, mock_port, redis_url)

    peers: list[Peer] = []
    starters: list[tuple[Peer, Callable[[Peer], None]]] = [
        (
            Peer("litellm", LITELLM_VERSION, LITELLM_NOTE, by_agent=True),
            lambda peer: start_litellm(procs, peer, mock_port, long_chunks),
        ),
        (
            Peer("portkey", PORTKEY_VERSION, PORTKEY_NOTE),
            lambda peer: start_portkey(procs, peer, mock_port),
        ),
        (
            Peer("floor", f"aiohttp {aiohttp.__version__}", FLOOR_NOTE),
            lambda peer: start_floor(procs, peer, mock_port),
        ),
        (
            Peer("floor+redis", f"aiohttp {aiohttp.__version__}", FLOOR_REDIS_NOTE),
            start_floor_redis,
        ),
    ]
    for peer, start in starters:
        try:
            start(peer)
            peer.idle_rss_kib = p.rss_kib(peer.pid)
            print(f"bench: {peer.name} {peer.version} started (pid {peer.pid})", flush=True)
        except (PeerError, p.BenchError, OSError) as exc:
            print(f"bench: {peer.name} is ABSENT from this run: {exc}", file=sys.stderr)
            peer.absent = str(exc).splitlines()[0]
        peers.append(peer)
    return peers
