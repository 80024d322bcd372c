"""Build frozen dataclasses from parsed YAML, collecting every problem with its path.

Used for ``gateway.yaml`` itself and for each backend's options, so a plugin's
options get the same checks (unknown keys, wrong types, missing values) as the
gateway's own settings.
"""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from gateway.errors import Problem

Report = Callable[[str, str], None]
"""``report(path, message)`` records one problem."""

_MISSING = object()
_INVALID: Any = object()  # what convert() returns for a value it reported


def build(cls: type[Any], data: object, path: str, report: Report) -> Any:
    """Return ``cls(**data)`` checked field by field, or ``None`` if anything is wrong."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        report(path, f"expected a mapping, got {_kind(data)}")
        return None
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    ok = True
    for key in data:
        if key not in fields:
            report(_join(path, str(key)), f"unknown key (expected one of: {', '.join(fields)})")
            ok = False
    values: dict[str, Any] = {}
    for name, f in fields.items():
        sub = _join(path, name)
        raw = data.get(name, _MISSING)
        if raw is _MISSING:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                report(sub, "required")
                ok = False
            continue
        value = convert(hints[name], raw, sub, report)
        if value is _INVALID:
            ok = False
            continue
        if f.metadata.get("env") and isinstance(value, str) and value not in os.environ:
            report(sub, f"environment variable {value} is not set")
            ok = False
        check = f.metadata.get("check")
        if check is not None and value is not None:
            message = check(value)
            if message:
                report(sub, message)
                ok = False
        values[name] = value
    return cls(**values) if ok else None


def convert(hint: Any, raw: object, path: str, report: Report) -> Any:
    """Check ``raw`` against a type hint; return the converted value or ``_INVALID``."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = get_args(hint)
        if raw is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return convert(inner[0], raw, path, report)
    if hint is bool:
        if isinstance(raw, bool):
            return raw
    elif hint is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
    elif hint is float:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
    elif hint is Decimal:
        if isinstance(raw, int | float | str) and not isinstance(raw, bool):
            try:
                value = Decimal(str(raw))
            except InvalidOperation:
                pass
            else:
                if value.is_finite():
                    return value
    elif hint is str:
        if isinstance(raw, str):
            return raw
    elif origin is tuple:
        if isinstance(raw, list):
            item_hint = get_args(hint)[0]
            items = [convert(item_hint, v, f"{path}[{i}]", report) for i, v in enumerate(raw)]
            return _INVALID if any(v is _INVALID for v in items) else tuple(items)
    elif dataclasses.is_dataclass(hint):
        built = build(hint, raw, path, report)  # type: ignore[arg-type]
        return _INVALID if built is None else built
    else:  # pragma: no cover - a programming error in a dataclass definition
        raise TypeError(f"unsupported type in configuration schema: {hint!r}")
    report(path, f"expected {_name(hint)}, got {_kind(raw)}")
    return _INVALID


def positive(value: float) -> str | None:
    """A ``check`` for field metadata: the value must be above zero."""
    return None if value > 0 else "must be greater than 0"


def non_negative(value: Decimal | float) -> str | None:
    return None if value >= 0 else "must not be negative"


def port(value: int) -> str | None:
    """A ``check``: a TCP port number."""
    return None if 0 <= value <= 65535 else "must be between 0 and 65535"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _name(hint: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if hint is Decimal:
        return "a number"
    if get_origin(hint) is tuple:
        return "a list"
    return names.get(hint, "a mapping")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    kinds.update({list: "a list", dict: "a mapping"})
    return kinds.get(type(value), type(value).__name__)


def problems_collector(file: str, lines: Mapping[str, int]) -> tuple[list[Problem], Report]:
    """A problem list and a ``report`` that locates each problem in ``file``."""
    problems: list[Problem] = []

    def report(path: str, message: str) -> None:
        problems.append(Problem(path, message, file, _locate(lines, path)))

    return problems, report


def _locate(lines: Mapping[str, int], path: str) -> int | None:
    """The line of ``path``, or of its nearest ancestor that has one."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None


T = TypeVar("T")
_FIELDS: dict[type, tuple[str, ...]] = {}
_set = object.__setattr__


def evolve(obj: T, **changes: Any) -> T:
    """``dataclasses.replace`` for a frozen dataclass without ``__post_init__``, in half
    the time: its fields copied and ``changes`` set, without running ``__init__`` (for
    the copies made on every request: the invocation, its hold record, a priced usage)."""
    cls = type(obj)
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    new = object.__new__(cls)
    for name in names:
        _set(new, name, changes.pop(name) if name in changes else getattr(obj, name))
    if changes:
        raise TypeError(f"{cls.__name__} has no field {next(iter(changes))!r}")
    return new
