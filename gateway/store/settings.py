"""The store's settings: the ``redis`` section of ``gateway.yaml``, and its checks.

The store owns them, so importing the store never pulls in the configuration
loader or the plugins it discovers.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gateway.typed import Report, port, positive

EMBEDDED = "embedded"


ADMISSION_MODES = ("fail_closed", "fail_open")


def _admission(value: str) -> str | None:
    return None if value in ADMISSION_MODES else f"must be one of: {', '.join(ADMISSION_MODES)}"


def _file(value: str) -> str | None:
    return None if os.path.isfile(value) else f"no such file: {value}"


@dataclass(frozen=True, slots=True)
class RedisTLS:
    """TLS for a ``rediss://`` URL (or Sentinel's master with ``enabled``): the CA that
    signed the server's certificate, a client certificate and key for mutual TLS, and
    whether to verify the server (certificate and host name)."""

    enabled: bool = False  # implied by a rediss:// URL
    ca_file: str | None = field(default=None, metadata={"check": _file})
    cert_file: str | None = field(default=None, metadata={"check": _file})
    key_file: str | None = field(default=None, metadata={"check": _file})
    verify: bool = True


@dataclass(frozen=True, slots=True)
class RedisSentinel:
    """Find the master named ``master`` through these Sentinels (``host:port``)."""

    master: str = ""
    nodes: tuple[str, ...] = ()
    password_env: str | None = field(default=None, metadata={"env": True})  # the Sentinels' own


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """``url`` is a redis:// or rediss:// URL, or ``embedded`` for an in-process store.

    ``password_env`` names an environment variable holding the password (an ACL
    user goes in the URL: ``redis://alice@host:6379/0``). ``admission`` says what a
    request gets when Redis cannot reserve its cost: a 503 (``fail_closed``), or
    admission without a reservation, settled later (``fail_open``)."""

    url: str = EMBEDDED
    cluster: bool = False  # the URL names one node of a Redis Cluster
    sentinel: RedisSentinel | None = None
    tls: RedisTLS = field(default_factory=RedisTLS)
    password_env: str | None = field(default=None, metadata={"env": True})
    socket_timeout: float = field(default=2.0, metadata={"check": positive})
    connect_timeout: float = field(default=2.0, metadata={"check": positive})
    max_connections: int = field(default=128, metadata={"check": positive})
    admission: str = field(default="fail_closed", metadata={"check": _admission})

    @property
    def uses_tls(self) -> bool:
        return self.url.startswith("rediss://") or self.tls.enabled


def check_redis(settings: RedisSettings, report: Report) -> None:
    """What the ``redis`` section's keys say together: one topology, a usable URL."""
    url = settings.url
    if url == EMBEDDED:
        if settings.cluster or settings.sentinel is not None:
            report("redis.url", "a Redis URL is required with cluster or sentinel")
        return
    parsed = urlsplit(url)
    if parsed.scheme not in ("redis", "rediss", "unix"):
        report("redis.url", "must start with redis://, rediss:// or unix:// (or be 'embedded')")
        return
    try:
        parsed.port  # noqa: B018  (parsed on access; redis-py would raise the same later)
    except ValueError:
        report("redis.url", "the port must be a number from 0 to 65535")
    if settings.password_env and parsed.password:
        report("redis.password_env", "the URL has a password too: give it in one place")
    if settings.cluster and settings.sentinel is not None:
        report("redis.sentinel", "cluster and sentinel exclude each other")
    sentinel = settings.sentinel
    if sentinel is not None:
        if not sentinel.master:
            report("redis.sentinel.master", "required: the name of the master")
        if not sentinel.nodes:
            report("redis.sentinel.nodes", "required: at least one host:port")
        for i, node in enumerate(sentinel.nodes):
            host, _, number = node.rpartition(":")
            if not host or not number.isdigit() or port(int(number)):
                report(f"redis.sentinel.nodes[{i}]", f"expected host:port, got {node!r}")
    tls = settings.tls
    given = tls.ca_file or tls.cert_file or tls.key_file or not tls.verify
    if given and not settings.uses_tls:
        report("redis.tls", "TLS options need a rediss:// URL (or tls.enabled: true)")
    if bool(tls.cert_file) != bool(tls.key_file):
        report("redis.tls", "cert_file and key_file go together")


def with_env(settings: RedisSettings) -> RedisSettings:
    """``GATEWAY_REDIS_URL`` overrides the file's ``redis.url``."""
    override = os.environ.get("GATEWAY_REDIS_URL")
    return dataclasses.replace(settings, url=override) if override else settings
