"""``gateway.dialects.tools``: a tool's name and schema checked where the dialect parses them.

Property: whatever a client puts in a tool's schema, the request is refused with
a 400 naming the keyword, or the schema is one the echo backend (which builds
arguments from it) can read without failing.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from gateway_plugins.backends.schema_example import example
from hypothesis import given
from hypothesis import strategies as st

from gateway.dialects.tools import tool_name, tool_schema
from gateway.errors import InvalidRequest
from tests.gateway.test_hostile_input import FAST, JSON, PARSERS, mutated

RICH: dict[str, Any] = {
    "type": "object",
    "properties": {
        "q": {"type": ["string", "null"], "minLength": 2, "maxLength": 9},
        "tags": {"type": "array", "items": {"enum": ["a"]}, "minItems": 1},
        "n": {"type": "integer", "minimum": 1, "exclusiveMaximum": 9},
        "x": {"anyOf": [{"type": "string"}, {"type": "number", "multipleOf": 0.5}]},
        "free": True,
    },
    "required": ["q", "tags", "n"],
    "additionalProperties": {"type": "string"},
    "$defs": {"d": {"type": "object", "properties": {}}},
}


@st.composite
def one_keyword_wrong(draw: st.DrawFn) -> dict[str, Any]:
    """RICH with one keyword (at the top, or in a property's schema) set to any JSON value."""
    schema = copy.deepcopy(RICH)
    node = (
        schema
        if draw(st.booleans())
        else schema["properties"][draw(st.sampled_from(["q", "tags", "n", "x"]))]
    )
    key = draw(st.sampled_from([*RICH, "items", "minItems", "minLength", "anyOf", "minimum"]))
    node[key] = draw(JSON.filter(bool))  # a falsy value reads as absent: not interesting
    return schema


def refused(schema: object) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        tool_schema({"parameters": schema}, "parameters", "tools[0]")
    assert info.value.status == 400
    return info.value


def test_a_rich_schema_is_accepted_as_it_is() -> None:
    assert tool_schema({"parameters": RICH}, "parameters", "tools[0]") == RICH
    assert tool_schema({}, "parameters", "tools[0]") is None


@pytest.mark.parametrize(
    ("schema", "param"),
    [
        ({"properties": ["q"]}, "tools[0].parameters.properties"),
        ({"properties": {"q": "string"}}, "tools[0].parameters.properties.q"),
        ({"properties": {"q": {"properties": 1}}}, "tools[0].parameters.properties.q.properties"),
        ({"type": 1}, "tools[0].parameters.type"),
        ({"type": []}, "tools[0].parameters.type"),
        ({"type": {"name": "object"}}, "tools[0].parameters.type"),
        ({"required": [1]}, "tools[0].parameters.required"),
        ({"items": "string"}, "tools[0].parameters.items"),
        ({"items": [{"type": 2}]}, "tools[0].parameters.items[0].type"),
        ({"oneOf": [{"type": "string"}, 5]}, "tools[0].parameters.oneOf[1]"),
        ({"minItems": -1}, "tools[0].parameters.minItems"),
        ({"maxLength": 1.5}, "tools[0].parameters.maxLength"),
        ({"minimum": "1"}, "tools[0].parameters.minimum"),
        ({"additionalProperties": "no"}, "tools[0].parameters.additionalProperties"),
        ({"enum": "a"}, "tools[0].parameters.enum"),
        ("object", "tools[0].parameters"),
    ],
)
def test_a_keyword_of_the_wrong_json_type_is_a_400_naming_it(schema: object, param: str) -> None:
    assert refused(schema).param == param


@pytest.mark.parametrize("name", ["get_weather", "a", "x-1", "A" * 64])
def test_good_names(name: str) -> None:
    assert tool_name({"name": name}, "tools[0]") == name


@pytest.mark.parametrize("name", [None, "", 3, ["f"], "two words", "f.g", "caf\u00e9", "a" * 65])
def test_bad_names_are_a_400(name: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        tool_name({"name": name}, "tools[0]")
    assert info.value.param == "tools[0].name"


def test_anthropic_allows_longer_names() -> None:
    assert tool_name({"name": "a" * 128}, "tools[0]", longest=128) == "a" * 128


def _with_schema(dialect: str, schema: object) -> dict[str, Any]:
    base = PARSERS[dialect][1]
    body = dict(base)
    tool = dict(base["tools"][0])
    if dialect == "chat":
        tool["function"] = dict(tool["function"]) | {"parameters": schema}
    elif dialect == "responses":
        tool["parameters"] = schema
    else:
        tool["input_schema"] = schema
    body["tools"] = [tool]
    return body


@pytest.mark.parametrize("dialect", ["chat", "responses", "messages"])
def test_any_schema_is_refused_or_readable_by_the_echo_backend(dialect: str) -> None:
    parse, _ = PARSERS[dialect]

    @FAST
    @given(one_keyword_wrong() | mutated(RICH) | JSON)
    def check(schema: object) -> None:
        try:
            invocation: Any = parse(_with_schema(dialect, schema))
        except InvalidRequest as exc:
            assert exc.status == 400 and exc.param and exc.param.startswith("tools[0]")
            return
        example(invocation.tools[0].parameters)  # the echo backend's reading of it

    check()


def test_the_echo_backend_keeps_its_example_small() -> None:
    value = example(
        {"type": "array", "items": {"type": "string", "minLength": 10**9}, "minItems": 10**9}
    )
    assert 0 < len(value) <= 256 and all(len(v) <= 256 for v in value)
