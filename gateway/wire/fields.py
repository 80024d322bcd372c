"""Typed reads of fields from a parsed JSON request, failing with a 400 naming the field.

Every reader takes the object, the key and the field's path as the client
would name it (``messages[2].content``), and raises ``InvalidRequest`` with
that path as ``param``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from gateway.errors import InvalidRequest

JsonMap = Mapping[str, Any]

# Integers a JSON encoder (and every upstream) can carry.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def invalid(path: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid '{path}': {message}", param=path)


def missing(path: str) -> InvalidRequest:
    return InvalidRequest(f"Missing required parameter: '{path}'", param=path)


def as_object(value: object, path: str) -> JsonMap:
    if not isinstance(value, dict):
        raise invalid(path, f"expected an object, but got {kind(value)}")
    return value


def as_list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(path, f"expected an array, but got {kind(value)}")
    return value


def as_str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise invalid(path, f"expected a string, but got {kind(value)}")
    return value


def req_str(obj: JsonMap, key: str, path: str = "", *, non_empty: bool = True) -> str:
    sub = join(path, key)
    if key not in obj or obj[key] is None:
        raise missing(sub)
    value = as_str(obj[key], sub)
    if non_empty and not value:
        raise invalid(sub, "must not be empty")
    return value


def opt_str(obj: JsonMap, key: str, path: str = "") -> str | None:
    value = obj.get(key)
    return None if value is None else as_str(value, join(path, key))


def opt_bool(obj: JsonMap, key: str, path: str = "") -> bool | None:
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise invalid(join(path, key), f"expected a boolean, but got {kind(value)}")


def opt_int(
    obj: JsonMap, key: str, path: str = "", *, lo: int | None = None, hi: int | None = None
) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    sub = join(path, key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(sub, f"expected an integer, but got {kind(value)}")
    _check_range(value, sub, INT64_MIN if lo is None else lo, INT64_MAX if hi is None else hi)
    return value


def opt_number(
    obj: JsonMap, key: str, path: str = "", *, lo: float | None = None, hi: float | None = None
) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    sub = join(path, key)
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise invalid(sub, f"expected a number, but got {kind(value)}")
    _check_range(value, sub, lo, hi)
    return float(value)


def opt_object(obj: JsonMap, key: str, path: str = "") -> JsonMap | None:
    value = obj.get(key)
    return None if value is None else as_object(value, join(path, key))


def opt_list(obj: JsonMap, key: str, path: str = "") -> list[Any] | None:
    value = obj.get(key)
    return None if value is None else as_list(value, join(path, key))


def str_map(obj: JsonMap, key: str, path: str = "", *, max_pairs: int = 16) -> dict[str, str]:
    """A ``metadata``-style map of short strings (OpenAI's limits)."""
    value = opt_object(obj, key, path)
    if value is None:
        return {}
    sub = join(path, key)
    if len(value) > max_pairs:
        raise invalid(sub, f"at most {max_pairs} pairs are allowed")
    for k, v in value.items():
        if len(k) > 64:
            raise invalid(sub, f"key {k[:64]!r}... is longer than 64 characters")
        if not isinstance(v, str):
            raise invalid(join(sub, k), f"expected a string, but got {kind(v)}")
        if len(v) > 512:
            raise invalid(join(sub, k), "is longer than 512 characters")
    return dict(value)


def _check_range(value: float, path: str, lo: float | None, hi: float | None) -> None:
    if lo is not None and value < lo:
        raise invalid(path, f"must be at least {lo}, but got {value}")
    if hi is not None and value > hi:
        raise invalid(path, f"must be at most {hi}, but got {value}")


def kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
