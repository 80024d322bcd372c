"""Size limits on a parsed request body, shared by every request dialect.

Each parser calls ``check_request`` once, before it reads any field, with the
names of its list of turns (``messages`` or ``input``) and of its tools. The
walk is iterative (a body nested a million levels deep cannot exhaust the
stack) and stops at the first limit exceeded:

- nesting deeper than ``max_json_depth`` -> 400 ``json_too_deep``;
- more than ``max_input_items`` entries in the turns list -> 400 ``too_many_items``;
- more than ``max_tools`` tools -> 400 ``too_many_tools``;
- more than ``max_text_chars`` characters in all strings (keys included) ->
  413 ``request_too_large``.

The byte size of the body is limited before parsing (``read_json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import InvalidRequest, PayloadTooLarge

MIB = 1024 * 1024

MAX_JSON_DEPTH = 64
MAX_INPUT_ITEMS = 2048
MAX_TOOLS = 256
MAX_TEXT_CHARS = 4 * MIB


class RequestLimits(Protocol):
    """What ``check_request`` reads; ``gateway.settings.Limits`` provides it."""

    @property
    def max_json_depth(self) -> int: ...
    @property
    def max_input_items(self) -> int: ...
    @property
    def max_tools(self) -> int: ...
    @property
    def max_text_chars(self) -> int: ...


@dataclass(frozen=True, slots=True)
class DefaultRequestLimits:
    max_json_depth: int = MAX_JSON_DEPTH
    max_input_items: int = MAX_INPUT_ITEMS
    max_tools: int = MAX_TOOLS
    max_text_chars: int = MAX_TEXT_CHARS


DEFAULTS: RequestLimits = DefaultRequestLimits()


def check_request(body: object, limits: RequestLimits, *, items: str, tools: str = "tools") -> None:
    """Raise a 4xx if ``body`` exceeds ``limits``; ``items``/``tools`` name its lists."""
    if type(body) is dict or isinstance(body, Mapping):  # a parsed body is a dict: no ABC check
        for key, most, code in (
            (items, limits.max_input_items, "too_many_items"),
            (tools, limits.max_tools, "too_many_tools"),
        ):
            value = body.get(key)
            if isinstance(value, list) and len(value) > most:
                raise InvalidRequest(
                    f"Invalid '{key}': at most {most} entries are allowed, but got {len(value)}.",
                    param=key,
                    code=code,
                )
    _check_shape(body, limits.max_json_depth, limits.max_text_chars)


def _check_shape(body: object, max_depth: int, max_chars: int) -> None:
    chars = 0
    stack: list[tuple[object, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            chars += len(value)
        elif isinstance(value, dict | list):
            if depth > max_depth:
                raise InvalidRequest(
                    f"The request body is nested deeper than {max_depth} levels.",
                    code="json_too_deep",
                )
            if isinstance(value, dict):
                for k, v in value.items():
                    chars += len(k)
                    stack.append((v, depth + 1))
            else:
                stack.extend((v, depth + 1) for v in value)
        else:
            continue
        if chars > max_chars:
            raise PayloadTooLarge(
                f"The request holds more than {max_chars} characters of text.",
            )
