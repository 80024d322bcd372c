"""Build frozen dataclasses from parsed YAML, collecting every problem with its path.

Used for ``gateway.yaml`` itself and for each backend's options, so a plugin's
options get the same checks (unknown keys, wrong types, missing values) as the
gateway's own settings.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import os
import types
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, ParamSpec, TypeVar, Union, cast, get_args, get_origin, get_type_hints

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


def fast_init(cls: type[T]) -> type[T]:
    """Give a frozen, slotted dataclass an ``__init__`` that sets its slots directly.

    A frozen dataclass's own ``__init__`` sets each field with ``object.__setattr__``
    (its ``__setattr__`` refuses): a generic attribute write per field, found through
    the type each time. The one made here has the same signature (the same defaults
    and default factories) and is generated as source text, as ``dataclasses`` makes
    its own. Everything else (frozen, ``__eq__``, ``__hash__``, ``__repr__``,
    ``dataclasses.replace``) stays the dataclass's. For the classes made on every
    request (the invocation, usage, events). Only plain fields: a class with
    ``__post_init__``, ``InitVar``, ``init=False`` or keyword-only fields is refused
    when it is defined.

    How it sets the fields depends on how many there are:

    - up to ``_FEW_FIELDS``: each slot's own setter (its member descriptor's
      ``__set__``), about 700 instructions a field, 40% less than ``object.__setattr__``;
    - more: the new object is switched to an unfrozen twin of its class (a plain class
      with the same ``__slots__``, so the same memory layout: Python's ``__class__``
      assignment allows it, and checks it), its fields are set by plain assignment
      (the interpreter's specialized slot store, about 60 instructions a field), and
      it is switched back, all before anyone else can see it: about 2,100
      instructions for the two switches. ``AgentInvocation`` (23 fields) is made in
      about a third of the instructions. The switch is tried once when the class is
      defined; a class whose layout does not allow it, and the object of a subclass,
      take the setters."""
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    if not (params.frozen and "__slots__" in vars(cls)) or hasattr(cls, "__post_init__"):
        raise TypeError(f"fast_init needs a frozen slotted dataclass without __post_init__: {cls}")
    namespace: dict[str, Any] = {"_MISSING": dataclasses.MISSING, "_cls": cls}
    args: list[str] = []
    defaults: list[str] = []  # the default factories' calls
    names: list[str] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init or f.kw_only or f.name == "self" or f.name.startswith("_"):
            raise TypeError(f"fast_init takes plain fields only: {cls.__name__}.{f.name}")
        name = f.name
        names.append(name)
        namespace[f"_set_{name}"] = _setter(cls, name)
        if f.default is not dataclasses.MISSING:
            namespace[f"_default_{name}"] = f.default
            args.append(f"{name}=_default_{name}")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{name}"] = f.default_factory
            args.append(f"{name}=_MISSING")
            defaults.append(f"    if {name} is _MISSING:\n        {name} = _factory_{name}()")
        else:
            args.append(name)
    setters = [f"    _set_{name}(self, {name})" for name in names]
    twin = _twin(cls) if len(names) > _FEW_FIELDS else None
    if twin is None:
        body = setters or ["    pass"]
    else:
        namespace.update(_twin=twin, _switch=_switch, _type=type)
        body = [
            "    if _type(self) is not _cls:  # a subclass's object: the setters",
            *(f"    {line}" for line in setters),
            "        return",
            "    _switch(self, _twin)",
            *(f"    self.{name} = {name}" for name in names),
            "    _switch(self, _cls)",
        ]
    source = "\n".join([f"def __init__(self, {', '.join(args)}):", *defaults, *body])
    exec(source, namespace)  # the source is made above from the field names only
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[method-assign]
    _FAST.add(cls)
    if twin is not None:
        _COPIES[cls] = _copier(cls, twin, names)
        _MAKERS[cls] = functools.partial(_maker, namespace, args, defaults, names)
    return cls


P = ParamSpec("P")


def maker(cls: Callable[P, T], *, keywords_only: bool = False) -> Callable[P, T]:
    """A function that makes ``cls``'s objects as ``cls(...)`` does, with its signature.

    For a ``fast_init`` class of more than ``_FEW_FIELDS`` fields, the same object
    made without calling the class, about 4k instructions cheaper: a call of a class
    goes through ``type.__call__`` and the ``__init__`` slot, which carry keyword
    arguments in a dict made for the call (a plain function takes them directly).
    Otherwise ``cls`` itself. For the objects made on every request (``usage_from``'s
    ``Usage``): ``make_usage = maker(Usage)``, then ``make_usage(input_tokens=...)``.

    ``keywords_only``: every argument by keyword (a positional call is a ``TypeError``),
    for a money record whose fields of one type a reordered call would swap unseen
    (``holds.make_charge``); only for a class with a twin."""
    make = _MAKERS.get(cls)
    if make is None:
        if keywords_only:
            raise TypeError(f"maker(keywords_only=True) needs a fast_init class with a twin: {cls}")
        return cls
    return cast("Callable[P, T]", make(keywords_only))


def _maker(
    namespace: dict[str, Any],
    args: list[str],
    defaults: list[str],
    names: list[str],
    keywords_only: bool,
) -> Callable[..., Any]:
    """``maker``'s function for a ``fast_init`` class with a twin: its ``__init__``'s
    signature and defaults (``namespace``, the one ``__init__`` was made in), the fields
    set on a new object of the twin, which is then switched to the class."""
    lines = [
        f"def make({'*, ' if keywords_only else ''}{', '.join(args)}):",
        *defaults,
        "    _new = _twin()",
        *(f"    _new.{name} = {name}" for name in names),
        "    _switch(_new, _cls)",
        "    return _new",
    ]
    namespace = dict(namespace)
    exec("\n".join(lines), namespace)  # the source is made from the field names only
    make: Callable[..., Any] = namespace["make"]
    make.__qualname__ = make.__name__ = f"make_{namespace['_cls'].__qualname__}"
    make.__module__ = namespace["_cls"].__module__
    return make


# Up to this many fields, ``fast_init`` sets each with its slot's setter; beyond, the
# two switches to the unfrozen twin and back cost less than the setters.
_FEW_FIELDS = 3
# ``obj.__class__ = cls`` (``object.__setattr__(obj, "__class__", cls)``), without
# looking the name up: the setter of ``object``'s own ``__class__``.
_switch = object.__dict__["__class__"].__set__


def copier(cls: type[T]) -> Callable[..., T]:
    """``evolve`` of ``cls``'s objects as a function of its own: ``copy(obj, name=value)``,
    for a ``fast_init`` class with a twin; about 2.7k instructions less a call than
    ``evolve`` (no lookup of the class's copier, no dict of the changes). An object of a
    subclass is copied by ``evolve``. For the copies made on every request (a priced
    usage, the invocation with its output cap): ``copy_usage = copier(Usage)``."""
    copy = _COPIES.get(cls)
    if copy is None:
        raise TypeError(f"copier needs a fast_init class with a twin: {cls}")
    return copy


def _copier(cls: type, twin: type, names: list[str]) -> Callable[..., Any]:
    """``evolve`` for ``cls``'s own objects (``_COPIES``, ``copier``): the copy made as
    the twin's object (``fast_init``), each field read from the original unless it is
    changed (a keyword argument), then switched to ``cls``. An unknown field is a
    ``TypeError``; an object of another class (a subclass's) is handed to ``evolve``."""
    namespace: dict[str, Any] = {"_KEEP": _KEEP, "_cls": cls, "_twin": twin, "_switch": _switch}
    namespace.update(_type=type, _evolve=evolve)
    pairs = ", ".join(f"({name!r}, {name})" for name in names)
    changed = f"{{k: v for k, v in ({pairs},) if v is not _KEEP}}"
    lines = [
        f"def evolve(_obj, {', '.join(f'{name}=_KEEP' for name in names)}):",
        "    if _type(_obj) is not _cls:",
        f"        return _evolve(_obj, **{changed})",
        "    _new = _twin()",
        *(f"    _new.{n} = _obj.{n} if {n} is _KEEP else {n}" for n in names),
        "    _switch(_new, _cls)",
        "    return _new",
    ]
    source = "\n".join(lines)
    exec(source, namespace)  # the source is made above from the field names only
    copy: Callable[..., Any] = namespace["evolve"]
    copy.__qualname__ = f"{cls.__qualname__}.evolve"
    return copy


_KEEP: Any = object()  # a field ``evolve`` does not change
_COPIES: dict[type, Callable[..., Any]] = {}  # ``fast_init`` classes -> their copiers
_MAKERS: dict[object, Callable[[bool], Callable[..., Any]]] = {}  # classes -> ``_maker``


def _twin(cls: type) -> type | None:
    """A plain class with ``cls``'s slots, which its objects may switch to and back
    (``fast_init``); None if the layouts differ (Python refuses the switch)."""
    twin = type(
        f"{cls.__name__}Unfrozen",
        (),
        {"__slots__": cls.__slots__, "__module__": cls.__module__},  # type: ignore[attr-defined]
    )
    probe: object = object.__new__(cls)
    try:
        _switch(probe, twin)
    except TypeError:
        return None
    _switch(probe, cls)
    return twin


_FAST: set[type] = set()  # the classes given ``fast_init``'s ``__init__``


def _setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    """The setter of field ``name`` of ``cls``'s objects: its slot's own, if it has one."""
    slot = getattr(cls, name, None)
    if isinstance(slot, types.MemberDescriptorType):
        return slot.__set__
    return lambda obj, value: _set(obj, name, value)


_set = object.__setattr__


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """How ``evolve`` copies one class: its fields' places, a getter of all their values
    at once (a tuple, in field order), and the fields' setters in the same order."""

    places: dict[str, int]
    values: Callable[[Any], tuple[Any, ...]]
    setters: tuple[Callable[[Any, Any], None], ...]
    fast: bool  # the class has ``fast_init``'s ``__init__``: the copy is ``cls(*values)``
    derived: bool  # the class has ``__post_init__``: the copy is ``dataclasses.replace``'s

    @classmethod
    def of(cls, kind: type) -> _Plan:
        names = [f.name for f in dataclasses.fields(kind)]
        getter = operator.attrgetter(*names)
        values = getter if len(names) > 1 else lambda obj: (getter(obj),)
        setters = tuple(_setter(kind, n) for n in names)
        fast, derived = kind in _FAST, hasattr(kind, "__post_init__")
        plan = cls({n: i for i, n in enumerate(names)}, values, setters, fast, derived)
        _PLANS[kind] = plan
        return plan


_PLANS: dict[type, _Plan] = {}


def evolve(obj: T, **changes: Any) -> T:
    """``dataclasses.replace`` for a frozen dataclass, in a third of the time: its fields
    copied and ``changes`` set, without running ``__init__`` (a class with
    ``__post_init__`` is copied by ``dataclasses.replace`` itself, which runs it)
    (for the copies made on every request: the invocation, its hold record, a priced
    usage)."""
    cls = type(obj)
    copy = _COPIES.get(cls)
    if copy is not None:  # a fast_init class's (see ``_copier``)
        try:
            return copy(obj, **changes)  # type: ignore[no-any-return]
        except TypeError:
            pass  # a field it does not have: named below
    plan = _PLANS.get(cls) or _Plan.of(cls)
    if plan.derived:  # fields made by ``__post_init__`` (``Pricing.rates``) are made again
        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    values: Sequence[Any] = plan.values(obj)
    if changes:
        values = list(values)
        places = plan.places
        for name, value in changes.items():
            place = places.get(name)
            if place is None:
                raise TypeError(f"{cls.__name__} has no field {name!r}")
            values[place] = value
    if plan.fast:  # its __init__ is straight-line code: faster than the loop below
        return cls(*values)
    new = object.__new__(cls)
    for set_, value in zip(plan.setters, values, strict=True):
        set_(new, value)
    return new
