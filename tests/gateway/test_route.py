from __future__ import annotations

from decimal import Decimal

from gateway.route import Pricing


def test_free_only_when_every_price_is_zero() -> None:
    assert Pricing().free
    assert Pricing(cached_input=Decimal(0), cache_write=Decimal(0)).free
    assert not Pricing(input=Decimal("0.000001")).free
    assert not Pricing(output=Decimal(1)).free
    assert not Pricing(cached_input=Decimal("0.1")).free
    assert not Pricing(cache_write=Decimal("0.1")).free
