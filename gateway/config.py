"""``gateway.yaml``: its schema, and loading it with every problem located by line.

A configuration that loads is complete: every backend type resolved to its
plugin, every option checked, every route pointing at a backend, every secret's
environment variable present. Nothing about it is checked again per request.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from gateway.dialects import request_limits
from gateway.errors import ConfigError, Problem
from gateway.plugin import BACKENDS_GROUP, FILTERS_GROUP, BackendPlugin, FilterPlugin
from gateway.route import Route, output_cap, reasoning_events
from gateway.typed import Report, build, non_negative, positive, problems_collector

EMBEDDED = "embedded"
MIB = 1024 * 1024


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be between 0 and 65535"


@dataclass(frozen=True, slots=True)
class Listen:
    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata={"check": _port})


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


@dataclass(frozen=True, slots=True)
class AdminListen:
    """A listener of its own for the admin API (loopback unless told otherwise)."""

    host: str = "127.0.0.1"
    port: int = field(default=8081, metadata={"check": _port})


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
class ResponsesSettings:
    """Stored Open Responses responses (``store: true``) live ``retention_seconds``
    in Redis. ``reasoning_events`` is how streams carry reasoning, unless a route
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


_EXPORTERS = ("none", "console", "otlp")


def _exporter(value: str) -> str | None:
    return None if value in _EXPORTERS else f"must be one of {', '.join(_EXPORTERS)}"


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """OpenTelemetry traces (``gateway.tracing``): off unless ``exporter`` says where."""

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
class _BackendSettings:
    """The keys of a ``backends`` entry that belong to the gateway, not the plugin."""

    timeouts: Timeouts = field(default_factory=Timeouts)
    circuit_breaker: BreakerSettings = field(default_factory=BreakerSettings)


_GATEWAY_KEYS = ("type", "timeouts", "circuit_breaker")


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """A ``backends`` entry resolved to its plugin, with validated options."""

    name: str
    type: str
    plugin: BackendPlugin
    options: Any
    timeouts: Timeouts = field(default_factory=Timeouts)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)


@dataclass(frozen=True, slots=True)
class FilterSpec:
    """A ``filters`` entry resolved to its plugin, with validated options."""

    type: str
    plugin: FilterPlugin
    options: Any


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
    shutdown: ShutdownSettings = field(default_factory=ShutdownSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    # One log line per request (the request_log filter) unless turned off; an
    # explicit request_log entry in ``filters`` replaces it rather than doubling it.
    access_log: bool = True


ACCESS_LOG_FILTER = "request_log"


@dataclass(frozen=True, slots=True)
class GatewayConfig(Settings):
    """A whole, checked ``gateway.yaml``."""

    backends: Mapping[str, BackendSpec] = field(default_factory=dict)
    routes: Mapping[str, Route] = field(default_factory=dict)
    filters: tuple[FilterSpec, ...] = ()
    source: str = ""
    sha256: str = ""  # of the bytes it was loaded from (by ``load_config``)


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Load and check ``path``; raise ``ConfigError`` listing every problem."""
    file = str(path)
    try:
        data = Path(file).read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([_unreadable(file, exc)]) from exc
    return parse_config(text, file, sha256=hashlib.sha256(data).hexdigest(), require_routes=True)


def parse_config(
    text: str, file: str = "<string>", *, sha256: str = "", require_routes: bool = False
) -> GatewayConfig:
    """Parse and check a configuration's text (``file`` names it in problems).

    ``require_routes``: a file without any route is refused. What ``gateway serve``
    starts from or reloads must have one (a gateway without routes answers every
    request with an error, and an empty file is more often a truncated write than
    an intent); a fragment checked on its own, as tests do, need not.
    """
    node, data = _document(text, file)
    lines: dict[str, int] = {}
    problems, report = problems_collector(file, lines)
    if node is not None:
        _index_lines(node, "", lines, report)

    plain = {k: v for k, v in data.items() if k not in ("backends", "routes", "filters")}
    settings = build(Settings, plain, "", report)
    if settings is not None:
        check_redis(_with_env(settings.redis), report)
    backends = _backends(data.get("backends"), report)
    raw_routes = data.get("routes")
    routes = _routes(raw_routes, report)
    filters = _filters(data.get("filters"), report)
    if (settings is None or settings.access_log) and not any(
        f.type == ACCESS_LOG_FILTER for f in filters
    ):
        filters = _access_log(report) + filters
    raw_backends = data.get("backends")
    declared = raw_backends if isinstance(raw_backends, dict) else {}
    if require_routes and (raw_routes is None or raw_routes == {}):
        # Located at the `routes:` key when there is one, else at the top of the file.
        problems.append(Problem("routes", NO_ROUTES, file, lines.get("routes", 1)))
    for agent, route in routes.items():
        for i, target in enumerate(route.targets):
            if target.backend not in declared:
                where = f"routes.{agent}." + (
                    f"backends[{i}].backend" if route.backends else "backend"
                )
                report(where, f"no backend named {target.backend!r}")
    if problems or settings is None:
        raise ConfigError(problems)

    plain_settings = {f.name: getattr(settings, f.name) for f in dataclasses.fields(Settings)}
    return GatewayConfig(
        **plain_settings | {"redis": _with_env(settings.redis)},
        backends=backends,
        routes=routes,
        filters=filters,
        source=file,
        sha256=sha256,
    )


NO_ROUTES = "no routes: map at least one agent id to a backend (every request would fail)"


def _document(text: str, file: str) -> tuple[yaml.Node | None, dict[Any, Any]]:
    """The file's top-level mapping (empty for an empty file) and its node."""
    try:
        node, data = _parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc, file)]) from exc
    if data is None:
        return node, {}
    if not isinstance(data, dict):
        line = node.start_mark.line + 1 if node is not None else 1
        raise ConfigError([Problem("", "the file must be a mapping of settings", file, line)])
    return node, data


def _yaml_problem(exc: yaml.YAMLError, file: str) -> Problem:
    """A YAML syntax error as a problem located in ``file``.

    PyYAML's own text names the stream (``<unicode string>``) rather than the file,
    and repeats the position: only what is wrong and where is kept.
    """
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return Problem("", f"invalid YAML: {exc}", file)
    mark = exc.problem_mark
    message = f"invalid YAML: {exc.problem} (column {mark.column + 1})"
    if exc.context:
        message += f", {exc.context}"
        if exc.context_mark is not None and exc.context_mark.line != mark.line:
            message += f" that starts at line {exc.context_mark.line + 1}"
    return Problem("", message, file, mark.line + 1)


def _unreadable(file: str, exc: OSError | UnicodeDecodeError) -> Problem:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return Problem("", f"cannot read: {reason}", file)


def _parse_yaml(text: str) -> tuple[yaml.Node | None, object]:
    """The document's nodes (whose marks locate problems by line) and the data built
    from those same nodes: the text is parsed once."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        return node, None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


def _installed(group: str) -> dict[str, EntryPoint]:
    """The plugins installed in ``group``, by name (a scan of every installed package's
    metadata, so once per group and load, not per entry)."""
    return {ep.name: ep for ep in entry_points(group=group)}


def _plugin(
    group: str, available: Mapping[str, EntryPoint], kind: object, path: str, report: Report
) -> Any:
    """The plugin an entry ``type`` names, or ``None`` after reporting why not."""
    expected = BackendPlugin if group == BACKENDS_GROUP else FilterPlugin
    what = "backend" if group == BACKENDS_GROUP else "filter"
    if not isinstance(kind, str):
        report(f"{path}.type", f"required: the {what} type")
        return None
    entry = available.get(kind)
    if entry is None:
        known = ", ".join(sorted(available)) or "none installed"
        report(f"{path}.type", f"unknown {what} type {kind!r} (known: {known})")
        return None
    try:
        plugin = entry.load()
    except Exception as exc:  # a third-party plugin may fail in any way
        report(f"{path}.type", f"{what} plugin {kind!r} failed to load: {exc!r}")
        return None
    if not isinstance(plugin, expected):
        report(f"{path}.type", f"entry point {kind!r} is not a {expected.__name__}")
        return None
    return plugin


def _backends(raw: object, report: Report) -> dict[str, BackendSpec]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        report("backends", "expected a mapping of backend name to settings")
        return {}
    specs: dict[str, BackendSpec] = {}
    available = _installed(BACKENDS_GROUP)
    for name, body in raw.items():
        path = f"backends.{name}"
        if not isinstance(body, dict):
            report(path, "expected a mapping with a 'type' and its options")
            continue
        plugin = _plugin(BACKENDS_GROUP, available, body.get("type"), path, report)
        if plugin is None:
            continue
        options = {k: v for k, v in body.items() if k not in _GATEWAY_KEYS}
        built = build(plugin.options, options, path, report)
        ours = {k: v for k, v in body.items() if k in _GATEWAY_KEYS and k != "type"}
        settings = build(_BackendSettings, ours, path, report)
        if built is not None and settings is not None:
            specs[str(name)] = BackendSpec(
                str(name), body["type"], plugin, built, settings.timeouts, settings.circuit_breaker
            )
    return specs


def _filters(raw: object, report: Report) -> tuple[FilterSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        report("filters", "expected a list of filters, each with a 'type' and its options")
        return ()
    specs: list[FilterSpec] = []
    available = _installed(FILTERS_GROUP)
    for i, body in enumerate(raw):
        path = f"filters[{i}]"
        if not isinstance(body, dict):
            report(path, "expected a mapping with a 'type' and its options")
            continue
        plugin = _plugin(FILTERS_GROUP, available, body.get("type"), path, report)
        if plugin is None:
            continue
        options = {k: v for k, v in body.items() if k != "type"}
        built = build(plugin.options, options, path, report)
        if built is not None:
            specs.append(FilterSpec(body["type"], plugin, built))
    return tuple(specs)


def _access_log(report: Report) -> tuple[FilterSpec, ...]:
    """The default access log: a ``request_log`` filter with its default options,
    first in the chain (closest to the client, so it logs what the client got)."""
    available = _installed(FILTERS_GROUP)
    plugin = _plugin(FILTERS_GROUP, available, ACCESS_LOG_FILTER, "access_log", report)
    if plugin is None:
        return ()
    options = build(plugin.options, {}, "access_log", report)
    return () if options is None else (FilterSpec(ACCESS_LOG_FILTER, plugin, options),)


def _routes(raw: object, report: Report) -> dict[str, Route]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        report("routes", "expected a mapping of agent id to route")
        return {}
    routes: dict[str, Route] = {}
    for agent, body in raw.items():
        path = f"routes.{agent}"
        route = build(Route, body, path, report)
        if route is None:
            continue
        if bool(route.backend) == bool(route.backends):
            report(path, "give either 'backend' or a non-empty 'backends' list")
        else:
            routes[str(agent)] = route
    return routes


def _index_lines(node: yaml.Node, path: str, lines: dict[str, int], report: Report) -> None:
    """Record the line of every mapping key and list item; flag duplicate keys."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            sub = f"{path}.{key}" if path else key
            lines[sub] = key_node.start_mark.line + 1
            if key in seen:
                report(sub, "duplicate key")
            seen.add(key)
            _index_lines(value_node, sub, lines, report)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = f"{path}[{i}]"
            lines[sub] = item.start_mark.line + 1
            _index_lines(item, sub, lines, report)


def load_redis_settings(path: str | os.PathLike[str]) -> RedisSettings:
    """Only the ``redis`` section, for commands that manage the store.

    They need no backend secrets, so an admin machine can run them without
    the upstreams' environment variables.
    """
    file = str(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([_unreadable(file, exc)]) from exc
    node, data = _document(text, file)
    lines: dict[str, int] = {}
    problems, report = problems_collector(file, lines)
    if node is not None:  # for line numbers; a duplicate key is `config check`'s business
        _index_lines(node, "", lines, lambda path, message: None)
    raw = data.get("redis")
    settings = build(RedisSettings, raw, "redis", report)
    if settings is not None:
        check_redis(_with_env(settings), report)
    if settings is None or problems:
        raise ConfigError(problems)
    return _with_env(settings)


def load_route_names(path: str | os.PathLike[str]) -> frozenset[str]:
    """The agent ids the ``routes`` section names, unchecked (like ``load_redis_settings``,
    it needs no backend secrets): enough to warn about a key for an agent nobody serves."""
    file = str(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([_unreadable(file, exc)]) from exc
    routes = _document(text, file)[1].get("routes")
    return frozenset(str(agent) for agent in routes) if isinstance(routes, dict) else frozenset()


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
            host, _, port = node.rpartition(":")
            if not host or not port.isdigit() or _port(int(port)):
                report(f"redis.sentinel.nodes[{i}]", f"expected host:port, got {node!r}")
    tls = settings.tls
    given = tls.ca_file or tls.cert_file or tls.key_file or not tls.verify
    if given and not settings.uses_tls:
        report("redis.tls", "TLS options need a rediss:// URL (or tls.enabled: true)")
    if bool(tls.cert_file) != bool(tls.key_file):
        report("redis.tls", "cert_file and key_file go together")


def _with_env(settings: RedisSettings) -> RedisSettings:
    """``GATEWAY_REDIS_URL`` overrides the file's ``redis.url``."""
    override = os.environ.get("GATEWAY_REDIS_URL")
    return dataclasses.replace(settings, url=override) if override else settings
