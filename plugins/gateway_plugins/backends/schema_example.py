"""A small value that satisfies a JSON Schema, for the echo backend's tool calls."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

_MAX_DEPTH = 8
# A client may ask for minItems: 1e9; the echo answers with at most this many (the
# arguments then fall short of the schema, which is better than a billion-item list).
_MOST = 256


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
        return [example(schema.get("items"), depth + 1) for _ in range(min(int(count), _MOST))]
    if kind == "string":
        text = "echo"
        min_len = min(int(schema.get("minLength", 0)), _MOST)
        length = max(min_len, len(text))
        max_len = schema.get("maxLength")
        if isinstance(max_len, int):
            length = max(min_len, min(length, max_len))
        return (text * (length // len(text) + 1))[:length]
    if kind == "integer":
        return _integer(schema)
    if kind == "number":
        return _number(schema)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return {}


def _bound(schema: Mapping[str, Any], name: str) -> float | None:
    value = schema.get(name)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _integer(schema: Mapping[str, Any]) -> int:
    """The smallest integer the lower bounds allow (else 1), kept under the upper bounds."""
    lows = [math.ceil(v) for v in (_bound(schema, "minimum"),) if v is not None]
    lows += [math.floor(v) + 1 for v in (_bound(schema, "exclusiveMinimum"),) if v is not None]
    highs = [math.floor(v) for v in (_bound(schema, "maximum"),) if v is not None]
    highs += [math.ceil(v) - 1 for v in (_bound(schema, "exclusiveMaximum"),) if v is not None]
    value = max(lows) if lows else 1
    return min(value, min(highs)) if highs else value


def _number(schema: Mapping[str, Any]) -> float:
    """The minimum, else 1.0, moved inside the schema's (possibly exclusive) bounds."""
    low, high = _bound(schema, "minimum"), _bound(schema, "maximum")
    ex_low, ex_high = _bound(schema, "exclusiveMinimum"), _bound(schema, "exclusiveMaximum")
    value = float(low) if low is not None else 1.0
    lower = max((b for b in (low, ex_low) if b is not None), default=None)
    upper = min((b for b in (high, ex_high) if b is not None), default=None)
    too_low = (low is not None and value < low) or (ex_low is not None and value <= ex_low)
    too_high = (high is not None and value > high) or (ex_high is not None and value >= ex_high)
    if not (too_low or too_high):
        return value
    if lower is not None and upper is not None:
        return (lower + upper) / 2
    if lower is not None:
        return float(lower) + 1
    assert upper is not None  # out of range, so some bound exists
    return float(upper) - (0 if ex_high is None else 1)
