"""A small value that satisfies a JSON Schema, for the echo backend's tool calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_MAX_DEPTH = 8


def example(schema: Mapping[str, Any] | None, depth: int = 0) -> Any:
    """Return a value valid against the common subset of JSON Schema tools use."""
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return {}
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options:
            return example(options[0], depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else None)
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        required = schema.get("required") or list(props)
        return {
            name: example(props.get(name), depth + 1) for name in required if isinstance(name, str)
        }
    if kind == "array":
        count = schema.get("minItems", 0)
        return [example(schema.get("items"), depth + 1) for _ in range(int(count))]
    if kind == "string":
        text = "echo"
        min_len = int(schema.get("minLength", 0))
        return (text * (min_len // len(text) + 1))[: max(min_len, len(text))]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.0))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return {}
