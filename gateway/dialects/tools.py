"""A function tool's definition as every dialect checks it: its name and its schema.

The schema (``parameters``, Anthropic's ``input_schema``) travels to a backend
that reads it: the echo backend builds arguments from it, an upstream
validates against it. A schema whose keywords have the wrong JSON type (a
``properties`` that is an array, a ``type`` that is a number) is the client's
mistake, so it is a 400 naming the keyword here, where the request is parsed,
not a crash or an upstream's 400 relayed as a 502 later. Only the structure is
checked (each keyword the backends read has the JSON type JSON Schema gives
it); what a schema means is the upstream's business, and unknown keywords pass.
"""

from __future__ import annotations

import math
import re

from gateway.wire.fields import JsonMap, as_object, invalid, join, kind, opt_object, req_str

# OpenAI documents this rule for function names (64 characters at most); the Messages
# door allows 128, the length Anthropic is believed to accept (its SDK does not say).
_NAME = re.compile(r"[A-Za-z0-9_-]+")

_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMAS = (
    "not", "if", "then", "else", "contains", "propertyNames",
    "additionalProperties", "unevaluatedProperties", "additionalItems",
)  # fmt: skip
_COUNTS = (
    "minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties",
    "minContains", "maxContains",
)  # fmt: skip
_NUMBERS = ("minimum", "maximum", "multipleOf")
_BOUNDS = ("exclusiveMinimum", "exclusiveMaximum")  # numbers; booleans in draft 4


def tool_name(tool: JsonMap, path: str, *, longest: int = 64) -> str:
    """The tool's ``name``: 1 to ``longest`` ASCII letters, digits, ``_`` or ``-``."""
    name = req_str(tool, "name", path)
    if len(name) > longest or not _NAME.fullmatch(name):
        raise invalid(join(path, "name"), f"must be 1-{longest} letters, digits, '_' or '-'")
    return name


def tool_schema(obj: JsonMap, key: str, path: str = "") -> JsonMap | None:
    """The JSON Schema at ``obj[key]``, if any, checked (see the module's doc)."""
    schema = opt_object(obj, key, path)
    if schema is not None:
        _check(schema, join(path, key))
    return schema


def _check(schema: JsonMap, path: str) -> None:
    kinds = schema.get("type")
    if kinds is not None and not (isinstance(kinds, str) or _strings(kinds, non_empty=True)):
        raise invalid(
            join(path, "type"), f"expected a type name or an array of them, not {kind(kinds)}"
        )
    required = schema.get("required")
    if required is not None and not _strings(required):
        raise invalid(join(path, "required"), "expected an array of property names")
    if (enum := schema.get("enum")) is not None and not isinstance(enum, list):
        raise invalid(join(path, "enum"), f"expected an array, not {kind(enum)}")
    for key in _COUNTS:
        value = schema.get(key)
        if value is not None and not (_number(value) and isinstance(value, int) and value >= 0):
            raise invalid(join(path, key), "expected a whole number of at least 0")
    for key in _NUMBERS + _BOUNDS:
        value = schema.get(key)
        if value is not None and not (
            _number(value) or (key in _BOUNDS and isinstance(value, bool))
        ):
            raise invalid(join(path, key), f"expected a number, not {kind(value)}")
    for sub, inner in _subschemas(schema, path):
        if not isinstance(inner, bool):  # true and false are schemas too
            _check(as_object(inner, sub), sub)


def _subschemas(schema: JsonMap, path: str) -> list[tuple[str, object]]:
    """The schemas nested in ``schema``, each with its path."""
    found: list[tuple[str, object]] = []
    for key in _SCHEMA_MAPS:
        if (members := schema.get(key)) is not None:
            sub = join(path, key)
            found += [(join(sub, name), m) for name, m in as_object(members, sub).items()]
    for key in _SCHEMA_LISTS:
        if (options := schema.get(key)) is not None:
            sub = join(path, key)
            if not isinstance(options, list):
                raise invalid(sub, f"expected an array of schemas, not {kind(options)}")
            found += [(join(sub, i), option) for i, option in enumerate(options)]
    for key in _SCHEMAS:
        if (inner := schema.get(key)) is not None:
            found.append((join(path, key), inner))
    items = schema.get("items")  # a schema, or (draft 4) an array of them
    if isinstance(items, list):
        found += [(join(join(path, "items"), i), item) for i, item in enumerate(items)]
    elif items is not None:
        found.append((join(path, "items"), items))
    return found


def _strings(value: object, *, non_empty: bool = False) -> bool:
    return (
        isinstance(value, list)
        and (bool(value) or not non_empty)
        and all(isinstance(v, str) for v in value)
    )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
