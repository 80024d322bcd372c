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

The byte size of the body is limited before parsing (``read_json``). A body whose
bytes show it within the depth and text limits (``within_shape``: most requests) is
not walked: the door hands its parser ``ShapeKnown`` limits.
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


@dataclass(frozen=True, slots=True)
class ShapeKnown:
    """Limits for a body already known to keep within their depth and text limits
    (``shape_known``): ``check_request`` counts its lists only, without the walk."""

    max_json_depth: int
    max_input_items: int
    max_tools: int
    max_text_chars: int


def within_shape(raw: bytes, limits: RequestLimits) -> bool:
    """Whether the body parsed from the JSON text ``raw`` surely keeps within ``limits``'
    depth and text limits, by its bytes alone: its strings (keys included) cannot hold
    more characters than ``raw`` has bytes (each character takes one at least), and it
    cannot nest deeper than ``raw`` has ``{`` and ``[`` (each container opens with one).
    A short body with few brackets (most requests) needs no walk."""
    return (
        len(raw) <= limits.max_text_chars
        and raw.count(b"{") + raw.count(b"[") <= limits.max_json_depth
    )


def shape_known(limits: RequestLimits) -> ShapeKnown:
    """``limits`` as ``ShapeKnown`` (the last one made is kept: the configuration's)."""
    global _known
    known = _known
    if known[0] is not limits:
        made = ShapeKnown(
            limits.max_json_depth, limits.max_input_items, limits.max_tools, limits.max_text_chars
        )
        known = _known = (limits, made)
    return known[1]


_known: tuple[object, ShapeKnown] = (None, ShapeKnown(0, 0, 0, 0))


def check_request(body: object, limits: RequestLimits, *, items: str, tools: str = "tools") -> None:
    """Raise a 4xx if ``body`` exceeds ``limits``; ``items``/``tools`` name its lists.
    The walk for depth and text is left out for ``ShapeKnown`` limits."""
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
    if type(limits) is not ShapeKnown:
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
