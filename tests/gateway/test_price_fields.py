"""Fields that change the upstream's price pass only where the route allows them."""

from __future__ import annotations

import dataclasses

import pytest

from gateway import price_fields
from gateway.config import parse_config
from gateway.errors import InvalidRequest
from gateway.invocation import AgentInvocation, Message, TextPart
from tests.gateway.test_config import only

BASE = AgentInvocation(agent="agent", input=(Message("user", (TextPart("hi"),)),))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("service_tier", "priority"),
        ("service_tier", "flex"),
        ("service_tier", "scale"),
        ("service_tier", "auto"),
        ("speed", "fast"),
    ],
)
def test_a_dearer_service_is_refused_unless_the_route_allows_it(name: str, value: str) -> None:
    invocation = dataclasses.replace(BASE, **{name: value})
    with pytest.raises(InvalidRequest) as info:
        price_fields.check(invocation, ())
    err = info.value
    assert err.status == 400 and err.param == name and err.code == "field_not_allowed"
    assert f"'{name}'" in err.message and "routes.agent.allow_price_fields" in err.message
    price_fields.check(invocation, (name,))  # allowed: passes
    other = "speed" if name == "service_tier" else "service_tier"
    with pytest.raises(InvalidRequest):
        price_fields.check(invocation, (other,))  # allowing another field is not enough


@pytest.mark.parametrize(
    ("name", "value"),
    [("service_tier", "default"), ("service_tier", "standard_only"), ("speed", "standard")],
)
def test_the_standard_price_passes_anywhere(name: str, value: str) -> None:
    price_fields.check(dataclasses.replace(BASE, **{name: value}), ())
    price_fields.check(BASE, ())


def test_the_route_option_is_checked() -> None:
    text = "backends:\n  e: {type: echo}\nroutes:\n  a:\n    backend: e\n"
    ok = parse_config(text + "    allow_price_fields: [service_tier, speed]\n")
    assert ok.routes["a"].allow_price_fields == ("service_tier", "speed")
    assert parse_config(text).routes["a"].allow_price_fields == ()
    problem = only(text + "    allow_price_fields: [service_teir]\n")
    assert problem.path == "routes.a.allow_price_fields"
    assert "service_teir" in problem.message and "service_tier" in problem.message
