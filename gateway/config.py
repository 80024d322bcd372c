"""``gateway.yaml``: loading it, with every problem located by line.

A configuration that loads is complete: every backend type resolved to its
plugin (``gateway.discovery``), every option checked, every route pointing at a
backend, every secret's environment variable present. Nothing about it is
checked again per request. The plain settings are ``gateway.settings``; the
``redis`` section is the store's (``gateway.store.settings``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway import discovery
from gateway.discovery import ACCESS_LOG_FILTER, BackendSpec, FilterSpec
from gateway.errors import ConfigError, Problem
from gateway.route import Route
from gateway.settings import AlertSettings, AuthSettings, ResponsesSettings, Settings
from gateway.store.cipher import KeyProblem, cipher_from_env
from gateway.store.settings import RedisSettings, check_redis, with_env
from gateway.typed import Report, build, problems_collector


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
        check_redis(with_env(settings.redis), report)
        check_encryption(settings.responses, report)
        check_webhook(settings.alerts, report)
    backends = discovery.backends(data.get("backends"), report)
    raw_routes = data.get("routes")
    routes = _routes(raw_routes, report)
    filters = discovery.filters(data.get("filters"), report)
    if (settings is None or settings.access_log) and not any(
        f.type == ACCESS_LOG_FILTER for f in filters
    ):
        filters = discovery.access_log(report) + filters
    raw_backends = data.get("backends")
    declared = raw_backends if isinstance(raw_backends, dict) else {}
    if require_routes and (raw_routes is None or raw_routes == {}):
        # Located at the `routes:` key when there is one, else at the top of the file.
        problems.append(Problem("routes", NO_ROUTES, file, lines.get("routes", 1)))
    well_known = [agent for agent, route in routes.items() if route.a2a.well_known]
    for agent in well_known[1:]:  # the origin has one /.well-known/agent-card.json
        report(f"routes.{agent}.a2a.well_known", f"already set by route {well_known[0]!r}")
    for agent, route in routes.items():
        for i, target in enumerate(route.targets):
            if target.backend not in declared:
                where = f"routes.{agent}." + (
                    f"backends[{i}].backend" if route.backends else "backend"
                )
                report(where, f"no backend named {target.backend!r}")
        if settings is not None:
            _check_storage(agent, route, settings.responses, report)
    if problems or settings is None:
        raise ConfigError(problems)

    plain_settings = {f.name: getattr(settings, f.name) for f in dataclasses.fields(Settings)}
    return GatewayConfig(
        **plain_settings | {"redis": with_env(settings.redis)},
        backends=backends,
        routes=routes,
        filters=filters,
        source=file,
        sha256=sha256,
    )


def check_encryption(settings: ResponsesSettings, report: Report) -> None:
    """Every key of ``responses.encryption`` present and usable: a missing or malformed
    key stops the start (and ``config check``), never a silent fall back to plain text."""
    encryption = settings.encryption
    if encryption is None:
        return
    try:
        cipher_from_env(encryption.key_env, encryption.previous_key_envs)
    except KeyProblem as problem:
        report(problem.setting, problem.message)


def check_webhook(alerts: AlertSettings, report: Report) -> None:
    """A webhook event is taken over from a process that went quiet for ``claim_after``
    seconds: a try may last ``timeout``, so a shorter ``claim_after`` would send an
    event twice whenever the receiver is merely slow."""
    webhook = alerts.webhook
    if webhook is not None and webhook.claim_after <= webhook.timeout:
        report(
            "alerts.webhook.claim_after",
            f"must be longer than alerts.webhook.timeout ({webhook.timeout:g} s): an event "
            "would be taken over, and sent again, while its first try is still waiting",
        )


def _check_storage(agent: str, route: Route, settings: ResponsesSettings, report: Report) -> None:
    """A route may restrict what the global policy lets be stored, never widen it."""
    path = f"routes.{agent}"
    if route.store == "allowed" and settings.store == "never":
        report(f"{path}.store", "cannot be 'allowed' while responses.store is 'never'")
    retention = route.retention_seconds
    if retention is not None and retention > settings.retention_seconds:
        report(
            f"{path}.retention_seconds",
            f"must not exceed responses.retention_seconds ({settings.retention_seconds}): "
            "a route can only shorten the retention",
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
        check_redis(with_env(settings), report)
    if settings is None or problems:
        raise ConfigError(problems)
    return with_env(settings)


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


def load_auth_settings(path: str | os.PathLike[str]) -> AuthSettings:
    """Only the ``auth`` section (like ``load_redis_settings``): how long the serving
    processes cache a key, which a move between teams must wait out."""
    file = str(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([_unreadable(file, exc)]) from exc
    problems, report = problems_collector(file, {})
    raw = _document(text, file)[1].get("auth", {})
    settings: AuthSettings | None = build(AuthSettings, raw, "auth", report)
    if settings is None or problems:
        raise ConfigError(problems)
    return settings
