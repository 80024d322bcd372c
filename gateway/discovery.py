"""Plugin discovery: the ``type`` of a ``backends`` or ``filters`` entry resolved
to the plugin installed under that entry-point name, with its options checked.

Built-in plugins (``gateway_plugins``) are found exactly as a third party's are,
through the entry-point groups ``gateway.plugin`` names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from gateway.plugin import BACKENDS_GROUP, FILTERS_GROUP, BackendPlugin, FilterPlugin
from gateway.settings import BreakerSettings, Timeouts
from gateway.typed import Report, build

ACCESS_LOG_FILTER = "request_log"


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


def installed(group: str) -> dict[str, EntryPoint]:
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


def backends(raw: object, report: Report) -> dict[str, BackendSpec]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        report("backends", "expected a mapping of backend name to settings")
        return {}
    specs: dict[str, BackendSpec] = {}
    available = installed(BACKENDS_GROUP)
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


def filters(raw: object, report: Report) -> tuple[FilterSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        report("filters", "expected a list of filters, each with a 'type' and its options")
        return ()
    specs: list[FilterSpec] = []
    available = installed(FILTERS_GROUP)
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


def access_log(report: Report) -> tuple[FilterSpec, ...]:
    """The default access log: a ``request_log`` filter with its default options,
    first in the chain (closest to the client, so it logs what the client got)."""
    available = installed(FILTERS_GROUP)
    plugin = _plugin(FILTERS_GROUP, available, ACCESS_LOG_FILTER, "access_log", report)
    if plugin is None:
        return ()
    options = build(plugin.options, {}, "access_log", report)
    return () if options is None else (FilterSpec(ACCESS_LOG_FILTER, plugin, options),)


def access_log_target(filters: tuple[FilterSpec, ...]) -> tuple[str, str] | None:
    """The logger and level of the access log (the ``request_log`` filter), if any: where
    the gateway itself writes the line of a request refused before any backend ran."""
    for spec in filters:
        if spec.type == ACCESS_LOG_FILTER:
            return getattr(spec.options, "logger", "gateway.requests"), getattr(
                spec.options, "level", "info"
            )
    return None
