from __future__ import annotations

from typing import Any

import pytest
from gateway_plugins.backends.schema_example import example

from tests.plugins.backends.schema_check import errors

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "the city"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
        "hourly": {"type": "boolean"},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}

SCHEMAS: list[dict[str, Any]] = [
    WEATHER,
    {"type": "object", "properties": {}},
    {"properties": {"q": {"type": "string"}}},  # object implied by properties
    {"type": "string", "minLength": 10},
    {"type": "string", "maxLength": 2},
    {"type": "string", "minLength": 3, "maxLength": 3},
    {"type": "integer", "minimum": 5},
    {"type": "integer", "maximum": 0},
    {"type": "integer", "minimum": -10, "maximum": -5},
    {"type": "integer", "exclusiveMinimum": 1},
    {"type": "integer", "minimum": 2.5},
    {"type": "number", "minimum": 0.5},
    {"type": "number", "maximum": -1},
    {"type": "number", "exclusiveMinimum": 1, "exclusiveMaximum": 2},
    {"type": "boolean"},
    {"type": "null"},
    {"type": ["null", "integer"]},
    {"type": "array", "items": {"type": "string"}, "minItems": 2},
    {"type": "array", "items": {"type": "integer"}},
    {"enum": [3, "x"]},
    {"const": "fixed"},
    {"type": "string", "default": "dflt"},
    {"anyOf": [{"type": "integer", "minimum": 7}, {"type": "string"}]},
    {"oneOf": [{"type": "boolean"}]},
    {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}]},
    {
        "type": "object",
        "properties": {
            "filters": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "field": {"type": "string", "enum": ["a", "b"]},
                        "values": {"type": "array", "items": {"type": "number"}, "minItems": 1},
                    },
                    "required": ["field", "values"],
                },
            },
            "limit": {"type": ["integer", "null"], "minimum": 1},
        },
        "required": ["filters"],
    },
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: str(s)[:60])
def test_example_satisfies_the_schema(schema: dict[str, Any]) -> None:
    value = example(schema)
    assert errors(schema, value) == [], value


def test_specific_values() -> None:
    assert example(WEATHER) == {"city": "echo", "unit": "celsius"}  # required keys only
    assert example({"type": "integer", "minimum": 5}) == 5
    assert example({"const": "fixed"}) == "fixed"
    assert example({"type": "string", "default": "dflt"}) == "dflt"
    assert len(example({"type": "string", "minLength": 10})) == 10


def test_all_properties_when_nothing_is_required() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}}}
    assert example(schema) == {"a": 1, "b": True}


def test_no_schema_is_an_empty_object() -> None:
    assert example(None) == {}
    assert example({}) == {}


def test_deep_recursion_is_bounded() -> None:
    schema: dict[str, Any] = {"type": "object"}
    node = schema
    for _ in range(50):
        child: dict[str, Any] = {"type": "object"}
        node["properties"] = {"next": child}
        node = child
    value = example(schema)
    depth = 0
    while isinstance(value, dict) and value:
        value = value["next"]
        depth += 1
    assert depth < 50
