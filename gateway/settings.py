"""The settings of ``gateway.yaml``: the sections that are plain values.

Each section is a frozen dataclass built and checked by ``gateway.typed``; the
``redis`` section is the store's (``gateway.store.settings``). Backends, routes
and filters are ``gateway.config``'s, which loads the whole file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.dialects import request_limits
from gateway.route import output_cap, reasoning_events, store_mode
from gateway.store.settings import RedisSettings
from gateway.typed import non_negative, port, positive

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Listen:
    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata={"check": port})


@dataclass(frozen=True, slots=True)
class AdminListen:
    """A listener of its own for the admin API (loopback unless told otherwise)."""

    host: str = "127.0.0.1"
    port: int = field(default=8081, metadata={"check": port})


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """The admin token is read from the environment variable ``token_env``. With
    ``listen`` the admin API is served only there, not on the public listener."""

    token_env: str | None = field(default=None, metadata={"env": True})
    listen: AdminListen | None = None


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Known keys are served from a cache for ``cache_ttl`` seconds; while Redis is
    unreachable, for ``stale_for`` seconds more."""

    cache_ttl: float = field(default=1.0, metadata={"check": positive})
    cache_size: int = field(default=100_000, metadata={"check": positive})
    stale_for: float = field(default=60.0, metadata={"check": non_negative})


@dataclass(frozen=True, slots=True)
class EncryptionSettings:
    """Stored content is sealed (AES-256-GCM, ``gateway.store.cipher``) with the key in
    the environment variable ``key_env`` (32 bytes in base64); values sealed with an
    older key still open while its variable is listed in ``previous_key_envs``."""

    key_env: str = field(metadata={"env": True})
    previous_key_envs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ResponsesSettings:
    """Stored Open Responses responses (``store: true``) live ``retention_seconds``
    in Redis. ``store: never`` keeps nothing, whatever a request asks; a route can
    say so for its agent alone, or shorten the retention (``gateway.store.policy``).
    With ``encryption`` every stored piece of content is sealed before it is written.
    ``reasoning_events`` is how streams carry reasoning, unless a route
    says otherwise (``gateway.dialects.responses_render`` says why there are three).

    A background response streamed (``background`` with ``stream``) keeps its
    events in Redis for resuming: at most ``events_max`` of them and
    ``events_max_bytes`` in all (the oldest go first), no longer than the response.
    One process follows at most ``max_followers`` such streams at once, each on a
    Redis connection of its own (a blocking read).
    """

    retention_seconds: int = field(default=30 * 24 * 3600, metadata={"check": positive})
    reasoning_events: str = field(default="summary", metadata={"check": reasoning_events})
    events_max: int = field(default=10_000, metadata={"check": positive})
    events_max_bytes: int = field(default=8 * MIB, metadata={"check": positive})
    max_followers: int = field(default=256, metadata={"check": positive})
    store: str = field(default="allowed", metadata={"check": store_mode})
    encryption: EncryptionSettings | None = None


_EXPORTERS = ("none", "console", "otlp")


def _exporter(value: str) -> str | None:
    return None if value in _EXPORTERS else f"must be one of {', '.join(_EXPORTERS)}"


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """OpenTelemetry traces (``gateway.server.tracing``): off unless ``exporter`` says where."""

    exporter: str = field(default="none", metadata={"check": _exporter})
    endpoint: str | None = None  # for otlp, e.g. http://collector:4318/v1/traces
    service_name: str = "agent-gateway"


@dataclass(frozen=True, slots=True)
class ShutdownSettings:
    """SIGTERM: readiness turns false at once; after ``drain_delay`` seconds no new
    connection is accepted; requests in flight get up to ``grace_period`` seconds
    to finish, then end with a terminal event. Settlements always complete."""

    drain_delay: float = field(default=2.0, metadata={"check": non_negative})
    grace_period: float = field(default=25.0, metadata={"check": non_negative})


@dataclass(frozen=True, slots=True)
class MeteringSettings:
    """Reservations: how long a hold's lease lasts without renewal (a process that
    dies loses its holds to the reaper after that), and the output cap reserved
    when neither the request nor the route sets one."""

    lease_seconds: float = field(default=30.0, metadata={"check": positive})
    default_max_output_tokens: int = field(default=4096, metadata={"check": output_cap})
    # Settlements Redis could not take, kept in memory until it answers again.
    outbox_size: int = field(default=100_000, metadata={"check": positive})


def _fractions(values: tuple[float, ...]) -> str | None:
    if all(0 < v <= 1 for v in values):
        return None
    return "each must be a fraction above 0 and at most 1 (e.g. 0.5, 0.8, 1.0)"


@dataclass(frozen=True, slots=True)
class AlertWebhook:
    """Where threshold events are POSTed (JSON, signed with HMAC-SHA256 of the body by
    the secret in the environment variable ``secret_env``, with the event's stable id
    in a header), with ``attempts`` tries ``backoff``, 2x ``backoff``, ... seconds apart,
    each within ``timeout``. Delivered at least once across replicas
    (``gateway.metering.webhook``): an event taken by a process that died is taken over
    by another after ``claim_after`` seconds, which must be longer than ``timeout``
    (checked at load: a shorter one would send an event again while its try waits)."""

    url: str
    secret_env: str = field(metadata={"env": True})
    attempts: int = field(default=5, metadata={"check": positive})
    backoff: float = field(default=1.0, metadata={"check": positive})
    timeout: float = field(default=5.0, metadata={"check": positive})
    claim_after: float = field(default=60.0, metadata={"check": positive})


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """Threshold events (``gateway.alerts``): when a key's or a team's spend crosses a
    fraction of its balance (as last topped up) or of its daily or monthly budget."""

    thresholds: tuple[float, ...] = field(default=(), metadata={"check": _fractions})
    webhook: AlertWebhook | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may ask of the gateway (see SECURITY.md for the why).

    Request bodies: ``max_body_bytes`` (413), nesting ``max_json_depth`` (400),
    ``max_input_items`` messages or input items (400), ``max_tools`` (400),
    ``max_text_chars`` characters in all strings (413); the body must arrive
    within ``body_read_timeout`` seconds (408). Request heads: one header line
    at most ``max_header_bytes``, at most ``max_headers`` of them (400 from
    aiohttp). A connection idle, or still sending its request head, for
    ``keepalive_timeout`` seconds is closed. A streaming client that does not
    take a write within ``client_write_timeout`` seconds is cut off. More than
    ``max_connections`` requests in flight in one process: 503 with Retry-After.
    """

    max_body_bytes: int = field(default=4 * MIB, metadata={"check": positive})
    max_json_depth: int = field(default=request_limits.MAX_JSON_DEPTH, metadata={"check": positive})
    max_input_items: int = field(
        default=request_limits.MAX_INPUT_ITEMS, metadata={"check": positive}
    )
    max_tools: int = field(default=request_limits.MAX_TOOLS, metadata={"check": positive})
    max_text_chars: int = field(default=request_limits.MAX_TEXT_CHARS, metadata={"check": positive})
    body_read_timeout: float = field(default=30.0, metadata={"check": positive})
    max_header_bytes: int = field(default=8190, metadata={"check": positive})
    max_headers: int = field(default=100, metadata={"check": positive})
    keepalive_timeout: float = field(default=75.0, metadata={"check": positive})
    client_write_timeout: float = field(default=30.0, metadata={"check": positive})
    max_connections: int = field(default=1024, metadata={"check": positive})


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Limits the gateway enforces on any backend's answer, in seconds.

    ``first_byte``: until the first event; ``idle``: between two events;
    ``total``: the whole answer (none by default: agent runs can be long).
    A timeout before the first byte falls back to the route's next backend.
    """

    first_byte: float = field(default=60.0, metadata={"check": positive})
    idle: float = field(default=60.0, metadata={"check": positive})
    total: float | None = field(default=None, metadata={"check": positive})


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """After ``failures`` consecutive failures from at least two API keys a backend
    gets no requests for ``cooldown`` seconds; then one probe request decides whether
    it is back. ``failures`` consecutive failures of one key's requests pause only
    that key on this backend, just as long (see ``gateway.breaker``)."""

    failures: int = field(default=5, metadata={"check": positive})
    cooldown: float = field(default=30.0, metadata={"check": positive})


@dataclass(frozen=True, slots=True)
class Settings:
    """The top-level keys whose values are plain settings."""

    listen: Listen = field(default_factory=Listen)
    redis: RedisSettings = field(default_factory=RedisSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    limits: Limits = field(default_factory=Limits)
    responses: ResponsesSettings = field(default_factory=ResponsesSettings)
    metering: MeteringSettings = field(default_factory=MeteringSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    shutdown: ShutdownSettings = field(default_factory=ShutdownSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    # One log line per request (the request_log filter) unless turned off; an
    # explicit request_log entry in ``filters`` replaces it rather than doubling it.
    access_log: bool = True
