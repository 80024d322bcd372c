from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import Problem
from gateway.typed import (
    build,
    copier,
    evolve,
    fast_init,
    maker,
    non_negative,
    positive,
    problems_collector,
)


@dataclass(frozen=True, slots=True)
class Inner:
    price: Decimal = field(default=Decimal(0), metadata={"check": non_negative})


@dataclass(frozen=True, slots=True)
class Outer:
    name: str
    count: int = 1
    ratio: float = field(default=1.0, metadata={"check": positive})
    flag: bool = False
    tags: tuple[str, ...] = ()
    inner: Inner = field(default_factory=Inner)
    limit: int | None = None
    secret_env: str | None = field(default=None, metadata={"env": True})


def run(data: object, lines: dict[str, int] | None = None) -> tuple[object, list[Problem]]:
    problems, report = problems_collector("f.yaml", lines or {})
    return build(Outer, data, "top", report), problems


def messages(data: object) -> dict[str, str]:
    value, problems = run(data)
    assert value is None
    return {p.path: p.message for p in problems}


def test_builds_with_conversions() -> None:
    value, problems = run(
        {"name": "n", "count": 2, "ratio": 3, "tags": ["a", "b"], "inner": {"price": 0.15}}
    )
    assert problems == []
    assert value == Outer("n", 2, 3.0, False, ("a", "b"), Inner(Decimal("0.15")))
    assert isinstance(value, Outer) and isinstance(value.ratio, float)


def test_none_is_an_empty_mapping() -> None:
    assert messages(None) == {"top.name": "required"}


def test_not_a_mapping() -> None:
    assert messages([1]) == {"top": "expected a mapping, got a list"}


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        ({"name": 1}, "top.name", "expected a string, got an integer"),
        ({"name": "n", "count": True}, "top.count", "expected an integer, got a boolean"),
        ({"name": "n", "count": 1.5}, "top.count", "expected an integer, got a number"),
        ({"name": "n", "ratio": "x"}, "top.ratio", "expected a number, got a string"),
        ({"name": "n", "ratio": 0}, "top.ratio", "must be greater than 0"),
        ({"name": "n", "flag": "yes"}, "top.flag", "expected a boolean, got a string"),
        ({"name": "n", "tags": "a"}, "top.tags", "expected a list, got a string"),
        ({"name": "n", "tags": ["a", 2]}, "top.tags[1]", "expected a string, got an integer"),
        ({"name": "n", "inner": 3}, "top.inner", "expected a mapping, got an integer"),
        (
            {"name": "n", "inner": {"price": "abc"}},
            "top.inner.price",
            "expected a number, got a string",
        ),
        (
            {"name": "n", "inner": {"price": ".inf"}},
            "top.inner.price",
            "expected a number, got a string",
        ),
        (
            {"name": "n", "inner": {"price": float("nan")}},
            "top.inner.price",
            "expected a number, got a number",
        ),
        ({"name": "n", "inner": {"price": -1}}, "top.inner.price", "must not be negative"),
        ({"name": "n", "limit": "x"}, "top.limit", "expected an integer, got a string"),
        ({"name": None}, "top.name", "expected a string, got null"),
    ],
)
def test_each_error(data: object, path: str, message: str) -> None:
    assert messages(data) == {path: message}


def test_optional_accepts_null() -> None:
    value, problems = run({"name": "n", "limit": None})
    assert problems == [] and isinstance(value, Outer) and value.limit is None


def test_unknown_key_lists_the_known_ones() -> None:
    found = messages({"name": "n", "cuont": 1})
    assert found["top.cuont"].startswith("unknown key (expected one of: name, count, ratio")


def test_env_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TYPED_TEST_VAR", raising=False)
    assert messages({"name": "n", "secret_env": "TYPED_TEST_VAR"}) == {
        "top.secret_env": "environment variable TYPED_TEST_VAR is not set"
    }
    monkeypatch.setenv("TYPED_TEST_VAR", "1")
    value, problems = run({"name": "n", "secret_env": "TYPED_TEST_VAR"})
    assert problems == [] and isinstance(value, Outer)


def test_checks_run_after_an_earlier_problem() -> None:
    # Every problem is collected: a bad field must not hide a later field's check.
    found = messages({"name": 1, "bogus": 0, "ratio": -1, "inner": {"price": -1}})
    assert set(found) == {"top.name", "top.bogus", "top.ratio", "top.inner.price"}


def test_problems_are_located_at_the_nearest_known_line() -> None:
    lines = {"top": 1, "top.inner": 4, "top.tags": 6, "top.tags[1]": 8}
    _, problems = run(
        {"name": "n", "inner": {"price": -1}, "tags": ["a", 2]},
        lines,
    )
    located = {p.path: p.line for p in problems}
    assert located == {"top.inner.price": 4, "top.tags[1]": 8}
    _, problems = run({"count": 1}, {})
    assert problems[0].line is None
    assert str(problems[0]) == "f.yaml: top.name: required"


def test_evolve_is_replace_without_init() -> None:
    from gateway.events import Usage
    from gateway.invocation import AgentInvocation
    from gateway.store.holds import HoldRecord

    usage = Usage(input_tokens=3, output_tokens=4, estimated=True)
    assert evolve(usage, credits=7) == dataclasses.replace(usage, credits=7)
    invocation = AgentInvocation(agent="a", input=(), instructions="be brief", stream=True)
    capped = evolve(invocation, max_output_tokens=5)
    assert capped == dataclasses.replace(invocation, max_output_tokens=5)
    assert invocation.max_output_tokens is None  # the original is untouched
    record = HoldRecord(1, 2, 3.0, "req", "key", "agent", "", 4.0)
    assert evolve(record, backend="b") == dataclasses.replace(record, backend="b")
    with pytest.raises(TypeError, match="no field 'bakend'"):
        evolve(record, bakend="b")


@dataclass(frozen=True, slots=True)
class Plain:
    name: str
    count: int = 1
    tags: tuple[str, ...] = ()
    inner: Inner = field(default_factory=Inner)
    extra: dict[str, int] = field(default_factory=dict)


@fast_init
@dataclass(frozen=True, slots=True)
class Fast:
    name: str
    count: int = 1
    tags: tuple[str, ...] = ()
    inner: Inner = field(default_factory=Inner)
    extra: dict[str, int] = field(default_factory=dict)


def test_fast_init_makes_the_same_objects() -> None:
    plain, fast = inspect.signature(Plain), inspect.signature(Fast)
    assert [(p.name, p.kind) for p in plain.parameters.values()] == [
        (p.name, p.kind) for p in fast.parameters.values()
    ]
    assert [fast.parameters[n].default for n in ("count", "tags")] == [1, ()]
    for args, kwargs in [(("a",), {}), (("a", 2, ("x",)), {"extra": {"k": 1}})]:
        made, expected = Fast(*args, **kwargs), Plain(*args, **kwargs)  # type: ignore[arg-type]
        assert dataclasses.asdict(made) == dataclasses.asdict(expected)
    assert Fast("a", inner=Inner(Decimal(2))).inner == Inner(Decimal(2))
    assert Fast("a").extra is not Fast("a").extra  # a default factory runs per object
    assert Fast("a") == Fast("a")
    assert (
        repr(Fast("a", 3))
        == "Fast(name='a', count=3, tags=(), inner=Inner(price=Decimal('0')), extra={})"
    )
    assert dataclasses.replace(Fast("a"), count=5) == Fast("a", 5)
    assert evolve(Fast("a"), count=5) == Fast("a", 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Fast("a").count = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        Fast()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Fast("a", 1, (), Inner(), {}, 6)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Fast("a", nmae="b")  # type: ignore[call-arg]


def test_fast_init_takes_plain_frozen_slotted_dataclasses_only() -> None:
    @dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclass(slots=True)
    class Mutable:
        a: int

    @dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclass(frozen=True, slots=True)
    class KeywordOnly:
        a: int = field(kw_only=True)

    @dataclass(frozen=True, slots=True)
    class NotInit:
        a: int = field(default=0, init=False)

    for cls in (NoSlots, Mutable, PostInit, KeywordOnly, NotInit):
        with pytest.raises(TypeError):
            fast_init(cls)


def test_the_invocation_and_events_are_made_by_fast_init() -> None:
    from gateway.events import Usage
    from gateway.invocation import AgentInvocation, Sampling

    assert AgentInvocation.__init__.__qualname__ == "AgentInvocation.__init__"
    invocation = AgentInvocation("a", ())
    assert invocation.sampling == Sampling() and invocation.metadata == {}
    assert invocation.sampling is not AgentInvocation("a", ()).sampling
    assert Usage(1, 2, estimated=True) == Usage(1, 2, 0, 0, 0, True, None)


@fast_init
@dataclass(frozen=True, slots=True)
class Few:
    name: str
    count: int = 1


def test_fast_init_switches_to_the_twin_only_for_many_fields() -> None:
    assert "_switch" in Fast.__init__.__code__.co_names
    assert "_switch" not in Few.__init__.__code__.co_names
    made = Fast("a", 2, ("x",))
    assert type(made) is Fast and made == Fast(name="a", count=2, tags=("x",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.name = "b"  # type: ignore[misc]
    assert Few("a") == Few("a", 1) and type(Few("a")) is Few


def test_a_subclass_of_a_fast_init_class_is_made_with_the_setters() -> None:
    class Sub(Fast):  # a __dict__ of its own: another layout than the twin's
        pass

    made = Sub("a", 2)
    assert type(made) is Sub and (made.name, made.count, made.extra) == ("a", 2, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.name = "b"  # type: ignore[misc]
    copied = evolve(made, count=3)
    assert type(copied) is Sub and copied.count == 3 and copied.name == "a"


def test_copier_copies_as_evolve_does() -> None:
    class Sub(Fast):
        pass

    copy = copier(Fast)
    made = Fast("a", 2, ("x",))
    assert copy(made, count=3) == evolve(made, count=3) == Fast("a", 3, ("x",))
    assert type(copy(made)) is Fast and copy(made) == made and copy(made) is not made
    sub = copy(Sub("a", 2), count=3, tags=("y",))  # a subclass's object: evolve's copy
    assert type(sub) is Sub and (sub.name, sub.count, sub.tags) == ("a", 3, ("y",))
    with pytest.raises(TypeError):
        copy(made, nope=1)
    with pytest.raises(TypeError):
        copier(Few)  # no twin: evolve it


def test_a_class_whose_layout_refuses_the_switch_takes_the_setters() -> None:
    @dataclass(frozen=True, slots=True)
    class Base:
        a: int

    @fast_init
    @dataclass(frozen=True, slots=True)
    class Derived(Base):  # Base's slot too: the twin's layout would differ
        b: int = 2
        c: int = 3
        d: int = 4

    assert "_switch" not in Derived.__init__.__code__.co_names
    assert Derived(1) == Derived(1, 2, 3, 4) and Derived(1).d == 4
    assert evolve(Derived(1), c=5) == Derived(1, 2, 5, 4)


@given(
    name=st.text(max_size=3),
    count=st.integers(),
    tags=st.lists(st.text(max_size=2), max_size=2).map(tuple),
    changes=st.dictionaries(st.sampled_from(["name", "count", "tags", "extra"]), st.integers()),
)
def test_fast_init_and_its_copies_are_the_dataclass_own(
    name: str, count: int, tags: tuple[str, ...], changes: dict[str, int]
) -> None:
    fast, plain = Fast(name, count, tags), Plain(name, count, tags)
    assert dataclasses.astuple(fast) == dataclasses.astuple(plain)
    copied = evolve(fast, **changes)
    assert type(copied) is Fast
    assert dataclasses.astuple(copied) == dataclasses.astuple(dataclasses.replace(plain, **changes))
    assert fast == Fast(name, count, tags)  # the original is untouched
    with pytest.raises(TypeError, match="Fast has no field 'nmae'"):
        evolve(fast, nmae=1, **changes)


@fast_init
@dataclass(frozen=True, slots=True)
class Awkward:  # fields named like the builtins and names the generated code uses
    type: str
    obj: int = 0
    new: int = 0
    object: int = 0
    evolve: int = 0


def test_fields_named_like_builtins_are_fields_all_the_same() -> None:
    made = Awkward("t", 1, 2, 3, 4)
    assert (made.type, made.obj, made.new, made.object, made.evolve) == ("t", 1, 2, 3, 4)
    assert evolve(made, type="u", new=5) == Awkward("u", 1, 5, 3, 4)


def test_maker_is_the_class_for_few_fields_and_a_function_for_many() -> None:
    from gateway.events import Usage

    assert maker(Few) is Few and maker(Plain) is Plain
    make_usage = maker(Usage)
    assert make_usage is not Usage and make_usage.__name__ == "make_Usage"
    made = make_usage(input_tokens=1, output_tokens=2, reasoning_tokens=1)
    assert type(made) is Usage and made == Usage(1, 2, 0, 0, 1, False, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.credits = 3  # type: ignore[misc]
    assert hash(made) == hash(Usage(1, 2, reasoning_tokens=1))
    from gateway.plugin import CallContext
    from gateway.route import Route

    route = Route(backend="b", model="m")
    fields = {"request_id": "r", "key_id": "k", "agent": "a", "backend": "b", "model": "m"}
    context = maker(CallContext)(**fields, route=route)
    assert type(context) is CallContext and context == CallContext(**fields, route=route)
    assert context.charge_id == ""


@given(
    args=st.lists(st.integers(), max_size=7),
    kwargs=st.dictionaries(
        st.sampled_from(["name", "count", "tags", "inner", "extra", "nmae"]), st.integers()
    ),
)
def test_maker_makes_what_the_class_makes_errors_included(
    args: list[int], kwargs: dict[str, int]
) -> None:
    make = maker(Fast)
    assert make is not Fast
    try:
        expected = Fast(*args, **kwargs)  # type: ignore[arg-type]
    except TypeError as exc:
        with pytest.raises(TypeError) as raised:
            make(*args, **kwargs)  # type: ignore[arg-type]
        if "positional" not in str(exc):  # (counts that differ by ``self``)
            assert str(raised.value).split("() ")[-1] == str(exc).split("() ")[-1]
        return
    made = make(*args, **kwargs)  # type: ignore[arg-type]
    assert type(made) is Fast and made == expected
    assert dataclasses.astuple(made) == dataclasses.astuple(expected)
    if "extra" not in kwargs and len(args) < 5:
        assert made.extra == {} and made.extra is not make("a").extra  # a factory per object


def test_maker_keywords_only_refuses_a_positional_call_and_a_class_without_a_twin() -> None:
    make = maker(Fast, keywords_only=True)
    assert {p.kind for p in inspect.signature(make).parameters.values()} == {
        inspect.Parameter.KEYWORD_ONLY
    }
    assert make(name="n", count=1) == Fast("n", 1)
    with pytest.raises(TypeError):
        make("n", 1)
    with pytest.raises(TypeError, match="needs a fast_init class with a twin"):
        maker(Few, keywords_only=True)


def test_evolve_of_a_class_with_post_init_makes_its_derived_fields_again() -> None:
    """``Pricing.rates`` is made by ``__post_init__``: an evolved copy's are its own."""
    from gateway.route import Pricing, Rates

    pricing = Pricing(input=Decimal("0.5"), output=Decimal(2))
    changed = evolve(pricing, output=Decimal("0.25"))
    assert changed == dataclasses.replace(pricing, output=Decimal("0.25"))
    assert changed.rates == Rates.of(changed) != pricing.rates
