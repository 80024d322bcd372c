"""A small JSON Schema checker for the subset tool schemas use (no jsonschema dependency)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is(kind: str, value: object) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def errors(schema: Mapping[str, Any], value: object, path: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema``; empty when it is valid."""
    out: list[str] = []
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: not the const")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: not in enum")
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_is(k, value) for k in kinds):
            return [*out, f"{path}: not of type {kind}"]
    for sub in schema.get("allOf", ()):
        out += errors(sub, value, path)
    for name in ("anyOf", "oneOf"):
        options = schema.get(name)
        if options and all(errors(o, value, path) for o in options):
            out.append(f"{path}: matches none of {name}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for req in schema.get("required", ()):
            if req not in value:
                out.append(f"{path}: missing {req}")
        for k, v in value.items():
            if k in props:
                out += errors(props[k], v, f"{path}.{k}")
            elif schema.get("additionalProperties") is False:
                out.append(f"{path}: unexpected {k}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            out.append(f"{path}: too few items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(f"{path}: too many items")
        for i, item in enumerate(value):
            out += errors(schema.get("items", {}), item, f"{path}[{i}]")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            out.append(f"{path}: too short")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(f"{path}: too long")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{path}: below minimum")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{path}: above maximum")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            out.append(f"{path}: not above exclusiveMinimum")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            out.append(f"{path}: not below exclusiveMaximum")
    return out
