"""Live configuration: reload ``gateway.yaml`` when its content changes, or on SIGHUP.

The file is polled by content (SHA-256 of what reading its path returns), not
watched by inode: a Kubernetes ConfigMap update swaps a ``..data`` symlink and
never writes the file itself. A new file is checked completely first; an
invalid one changes nothing, is logged with the same messages as ``gateway
config check``, and shows in ``/readyz``. Backends, routes and filters change
for new requests at once; requests in flight finish on the configuration they
started with, and so does the storage policy (``responses.store``,
``responses.retention_seconds`` and the routes' ``store`` and ``retention_seconds``):
a response is stored, or not, as the configuration its request started with says.
``alerts`` changes at once too: the next settlement checks the new thresholds, and the
webhook's deliveries use the new ``webhook`` at their next pass (its secret is read from
the environment at each delivery).
``listen``, ``redis``, ``auth``, ``limits``, the rest of ``responses`` (its
``encryption`` keys are read once, at start-up), ``metering``, ``admin``,
``shutdown`` and ``tracing`` take effect at the next restart (a warning says so).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from functools import partial
from pathlib import Path

from gateway import logs, metrics, redaction
from gateway.config import GatewayConfig, parse_config
from gateway.errors import ConfigError
from gateway.pipeline import Gateway

log = logging.getLogger(__name__)

RESTART_ONLY = (
    "listen", "redis", "auth", "limits", "responses.encryption",
    "responses.events_max", "responses.events_max_bytes", "responses.max_followers",
    "metering", "admin", "shutdown", "tracing",
)  # fmt: skip
# responses.reasoning_events, responses.store, responses.retention_seconds (the
# storage policy) and access_log are read per request (or rebuilt with
# the filters), so they change at once; alerts is handed to the meter (Gateway.reload).


def _setting(config: GatewayConfig, path: str) -> object:
    value: object = config
    for name in path.split("."):
        value = getattr(value, name)
    return value


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ConfigWatcher:
    def __init__(self, gateway: Gateway, path: str, interval: float = 1.0) -> None:
        self._gateway = gateway
        self._path = path
        self._interval = interval
        self._poke = asyncio.Event()
        # What was served is what was read: hashing the file again here could take a
        # newer version's digest for the one served, and never apply that version.
        self.digest = gateway.config.sha256 or self._read_digest()
        self.loaded_at = time.time()
        self.problems: tuple[str, ...] = ()
        self._rejected: str | None = None  # digest of the last invalid content
        self.reloads = 0

    def _read_digest(self) -> str | None:
        try:
            return _digest(Path(self._path).read_bytes())
        except OSError:
            return None

    def status(self) -> dict[str, object]:
        return {
            "source": self._path,
            "sha256": self.digest,
            "loaded_at": self.loaded_at,
            "reloads": self.reloads,
            "problems": list(self.problems),
        }

    def poke(self) -> None:
        """Check now (SIGHUP), even if the content looks unchanged."""
        self._poke.set()

    async def run(self) -> None:
        while True:
            forced = False
            try:
                await asyncio.wait_for(self._poke.wait(), self._interval)
                forced = True
            except TimeoutError:
                pass
            self._poke.clear()
            await self.check(forced=forced)

    async def check(self, *, forced: bool = False) -> bool:
        """Reload if the file changed (or ``forced``); True if a new configuration applies."""
        try:
            data = await asyncio.to_thread(Path(self._path).read_bytes)
        except OSError as exc:
            problem = f"{self._path}: unreadable: {exc}"
            if self.problems != (problem,):  # once, not at every poll
                log.error("configuration %s; keeping the current one", problem)
            self.problems, self._rejected = (problem,), None
            return False
        digest = _digest(data)
        if digest == self.digest and not forced:
            # The file is the one served again (a bad edit undone): nothing is wrong now.
            if self.problems:
                log.info("configuration %s is the one served again", self._path)
            self.problems, self._rejected = (), None
            return False
        if digest == self._rejected and not forced:
            return False
        try:
            text = data.decode("utf-8")
            config = await asyncio.to_thread(
                partial(parse_config, text, self._path, sha256=digest, require_routes=True)
            )
        except (ConfigError, UnicodeDecodeError) as exc:
            problems = exc.problems if isinstance(exc, ConfigError) else (str(exc),)
            self.problems = tuple(str(p) for p in problems)
            self._rejected = digest
            metrics.CONFIG_RELOADS.labels("rejected").inc()
            for problem in self.problems:
                log.error("configuration rejected, the current one stays: %s", problem)
            return False
        self._apply(config, digest)
        return True

    def _apply(self, config: GatewayConfig, digest: str) -> None:
        current = self._gateway.config
        later = [p for p in RESTART_ONLY if _setting(config, p) != _setting(current, p)]
        if later:
            log.warning("configuration: %s changed; takes effect at the next restart", later)
        logs.protect(redaction.configured_secrets(config))  # a new backend's key, say
        self._gateway.reload(config)
        self.digest, self._rejected, self.problems = digest, None, ()
        self.loaded_at = time.time()
        self.reloads += 1
        metrics.CONFIG_RELOADS.labels("applied").inc()
        log.info(
            "configuration reloaded (sha256 %s, %d backends, %d routes)",
            digest[:12],
            len(config.backends),
            len(config.routes),
        )
