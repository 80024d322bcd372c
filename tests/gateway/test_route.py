from __future__ import annotations

from decimal import Decimal

from gateway.route import Pricing, Route, Target


def test_free_only_when_every_price_is_zero() -> None:
    assert Pricing().free
    assert Pricing(cached_input=Decimal(0), cache_write=Decimal(0)).free
    assert not Pricing(input=Decimal("0.000001")).free
    assert not Pricing(output=Decimal(1)).free
    assert not Pricing(cached_input=Decimal("0.1")).free
    assert not Pricing(cache_write=Decimal("0.1")).free


def test_a_single_backends_targets_are_made_once() -> None:
    one = Route(backend="b")
    assert one.targets == (Target("b"),)
    assert Route(backend="b").targets is one.targets
    assert Route(backends=(Target("x"), Target("y"))).targets == (Target("x"), Target("y"))
