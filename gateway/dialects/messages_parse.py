"""Parse an Anthropic Messages request body into an ``AgentInvocation``.

``model`` is the agent id. As in the other dialects, fields the gateway does
not know are ignored, and a known field of the wrong shape is a 400 whose
message names it (``messages[2].content[0].source.data``).

The mapping:

- ``system`` (a string, or text blocks joined by a blank line) -> ``instructions``.
- ``messages``: ``user`` and ``assistant`` turns. Text blocks -> ``TextPart``;
  ``image`` (``base64`` as a ``data:`` URL, ``url``, ``file``) -> ``ImagePart``;
  ``document`` (``base64`` PDF as a ``data:`` URL, ``text`` and ``content``
  sources as a ``text/plain`` ``data:`` URL, ``url``, ``file``; ``title`` as
  the filename) -> ``FilePart``; ``tool_use`` -> ``FunctionCall`` (``input``
  as a JSON string); ``tool_result`` -> ``FunctionCallOutput`` (its text;
  ``is_error`` prefixes ``Error: ``; its images follow in a user message,
  after the turn's tool results); ``thinking`` -> ``Reasoning`` (the signature
  is dropped); ``redacted_thinking`` is dropped. ``cache_control`` and
  ``citations`` are accepted and ignored.
- ``tools``: client tools (``type`` absent or ``custom``) with ``input_schema``
  -> ``FunctionTool``; server tools (web search, bash, ...) are a 400.
- ``tool_choice``: ``auto``/``any``/``tool``/``none`` -> auto/required/the
  named function/none; ``disable_parallel_tool_use`` -> ``parallel_tool_calls: false``.
- ``max_tokens`` (required) -> ``max_output_tokens``; ``stop_sequences`` ->
  ``stop``; ``temperature`` (0-1), ``top_p``; ``metadata.user_id`` -> ``user``.
- ``top_k`` is checked (an integer >= 0) and ignored: the canonical
  invocation has no such field, and no other backend takes it.
- ``thinking``: ``{type: enabled, budget_tokens}`` (>= 1024, below
  ``max_tokens``) -> ``reasoning_effort`` by bucket: below 4096 ``low``, below
  16384 ``medium``, else ``high`` (the ``anthropic`` backend maps these back to
  1024, 4096 and 16384). ``disabled`` and ``adaptive`` set no effort (the
  backend's default). ``output_config.effort`` (low, medium, high, xhigh;
  ``max`` -> xhigh) sets the effort directly and wins over ``thinking``.
- ``service_tier`` (auto, standard_only) and ``speed`` (standard, fast) change
  the upstream's price: they reach the backend only on a route that allows
  them (``gateway.price_fields``).
- ``output_config.format`` (``{type: json_schema, schema}``) -> a JSON-schema
  ``response_format`` named ``output``.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from gateway.amounts import MAX_TOKENS
from gateway.dialects.request_limits import DEFAULTS, RequestLimits, check_request
from gateway.dialects.tools import tool_name, tool_schema
from gateway.errors import InvalidRequest
from gateway.invocation import (
    AgentInvocation,
    ContentPart,
    FilePart,
    ForcedFunction,
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    ImagePart,
    InputItem,
    Message,
    Reasoning,
    ResponseFormat,
    Sampling,
    TextPart,
    ToolChoice,
)
from gateway.typed import maker
from gateway.wire.fields import (
    JsonMap,
    as_list,
    as_object,
    as_str,
    invalid,
    join,
    missing,
    opt_bool,
    opt_int,
    opt_list,
    opt_number,
    opt_object,
    opt_str,
    req_str,
)

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
MIN_THINKING_BUDGET = 1024
# Upper bounds of each reasoning-effort bucket, in thinking budget tokens.
EFFORT_BUCKETS: tuple[tuple[int, str], ...] = ((4096, "low"), (16384, "medium"))
TOP_EFFORT = "high"
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "xhigh"}


_SERVICE_TIERS = ("auto", "standard_only")
_SPEEDS = ("standard", "fast")
# ``AgentInvocation(...)`` without the class's call (``typed.maker``): about 3.2k instructions less.
_make_invocation = maker(AgentInvocation)


def parse_messages_request(
    body: object, limits: RequestLimits = DEFAULTS, *, count_only: bool = False
) -> AgentInvocation:
    """The invocation a Messages request asks for.

    ``count_only`` parses a ``count_tokens`` request: ``max_tokens`` and
    ``stream`` are not part of it.
    """
    check_request(body, limits, items="messages")
    req = as_object(body, "body")
    agent = req_str(req, "model")
    max_tokens = opt_int(req, "max_tokens", lo=1, hi=MAX_TOKENS)
    if max_tokens is None and not count_only:
        raise missing("max_tokens")
    messages = opt_list(req, "messages")
    if not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    items: list[InputItem] = []
    for i, raw in enumerate(messages):
        items.extend(_message(as_object(raw, f"messages[{i}]"), f"messages[{i}]"))

    tools = tuple(_tool(t, f"tools[{i}]") for i, t in enumerate(opt_list(req, "tools") or ()))
    choice, parallel = _tool_choice(opt_object(req, "tool_choice"))
    opt_int(req, "top_k", lo=0)  # checked, not forwarded (see the module's docstring)
    metadata = opt_object(req, "metadata") or {}
    output_config = opt_object(req, "output_config") or {}
    effort = _reasoning_effort(opt_object(req, "thinking"), max_tokens)
    return _make_invocation(
        agent=agent,
        input=tuple(items),
        instructions=_system(req.get("system")),
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=parallel,
        sampling=Sampling(
            temperature=opt_number(req, "temperature", lo=0, hi=1),
            top_p=opt_number(req, "top_p", lo=0, hi=1),
            stop=_stop_sequences(opt_list(req, "stop_sequences")),
        ),
        max_output_tokens=max_tokens,
        response_format=_format(opt_object(output_config, "format", "output_config")),
        reasoning_effort=_effort(output_config) or effort,
        user=opt_str(metadata, "user_id", "metadata"),
        service_tier=_enum(req, "service_tier", _SERVICE_TIERS),
        speed=_enum(req, "speed", _SPEEDS),
        stream=False if count_only else bool(opt_bool(req, "stream")),
    )


# The conversation


def _system(raw: object) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw
    texts = []
    for i, block in enumerate(as_list(raw, "system")):
        sub = f"system[{i}]"
        block = as_object(block, sub)
        if req_str(block, "type", sub) != "text":
            raise invalid(join(sub, "type"), "system blocks must be of type 'text'")
        texts.append(as_str(block.get("text"), join(sub, "text")))
    return "\n\n".join(texts)


def _message(msg: JsonMap, path: str) -> list[InputItem]:
    role = req_str(msg, "role", path)
    content = msg.get("content")
    if content is None:
        raise missing(join(path, "content"))
    if role == "user":
        return _user(content, join(path, "content"))
    if role == "assistant":
        return _assistant(content, join(path, "content"))
    raise invalid(join(path, "role"), "must be 'user' or 'assistant' (put system text in 'system')")


def _blocks(content: object, path: str) -> list[tuple[str, str, JsonMap]]:
    """``(path, type, block)`` of each block; a string is one text block."""
    if isinstance(content, str):
        return [(path, "text", {"type": "text", "text": content})]
    out = []
    for i, raw in enumerate(as_list(content, path)):
        sub = f"{path}[{i}]"
        block = as_object(raw, sub)
        out.append((sub, req_str(block, "type", sub), block))
    return out


def _user(content: object, path: str) -> list[InputItem]:
    """Tool results first (Anthropic puts them first), then one message of the rest."""
    outputs: list[InputItem] = []
    media: list[ContentPart] = []  # images returned by tools
    parts: list[ContentPart] = []
    for sub, kind, block in _blocks(content, path):
        if kind == "tool_result":
            output, images = _tool_result(block, sub)
            outputs.append(output)
            media.extend(images)
        else:
            parts.append(_part(kind, block, sub))
    if media or parts:
        outputs.append(Message("user", (*media, *parts)))
    return outputs


def _assistant(content: object, path: str) -> list[InputItem]:
    items: list[InputItem] = []
    texts: list[ContentPart] = []

    def flush() -> None:
        if texts:
            items.append(Message("assistant", tuple(texts)))
            texts.clear()

    for sub, kind, block in _blocks(content, path):
        if kind == "text":
            texts.append(TextPart(as_str(block.get("text"), join(sub, "text"))))
        elif kind == "tool_use":
            flush()
            tool_input = as_object(block.get("input"), join(sub, "input"))
            items.append(
                FunctionCall(
                    call_id=req_str(block, "id", sub),
                    name=req_str(block, "name", sub),
                    arguments=orjson.dumps(tool_input).decode(),
                )
            )
        elif kind == "thinking":
            flush()
            items.append(Reasoning(as_str(block.get("thinking"), join(sub, "thinking"))))
        elif kind == "redacted_thinking":
            continue  # opaque to every backend but Anthropic's, and unsigned here
        else:
            raise invalid(join(sub, "type"), f"unsupported content block type {kind!r}")
    flush()
    return items


def _part(kind: str, block: JsonMap, path: str) -> ContentPart:
    if kind == "text":
        return TextPart(as_str(block.get("text"), join(path, "text")))
    if kind == "image":
        return _image(block, path)
    if kind == "document":
        return _document(block, path)
    raise invalid(join(path, "type"), f"unsupported content block type {kind!r}")


def _image(block: JsonMap, path: str) -> ImagePart:
    sub = join(path, "source")
    source = as_object(block.get("source"), sub)
    kind = req_str(source, "type", sub)
    if kind == "base64":
        media_type = req_str(source, "media_type", sub)
        if media_type not in IMAGE_TYPES:
            raise invalid(join(sub, "media_type"), f"must be one of {', '.join(IMAGE_TYPES)}")
        return ImagePart(f"data:{media_type};base64,{req_str(source, 'data', sub)}")
    if kind == "url":
        return ImagePart(req_str(source, "url", sub))
    if kind == "file":
        return ImagePart(file_id=req_str(source, "file_id", sub))
    raise invalid(join(sub, "type"), "expected 'base64', 'url' or 'file'")


def _document(block: JsonMap, path: str) -> FilePart:
    sub = join(path, "source")
    source = as_object(block.get("source"), sub)
    kind = req_str(source, "type", sub)
    title = opt_str(block, "title", path)
    if kind == "base64":
        media_type = req_str(source, "media_type", sub)
        return FilePart(title, data=f"data:{media_type};base64,{req_str(source, 'data', sub)}")
    if kind == "text":
        return FilePart(title, data=_text_data(req_str(source, "data", sub, non_empty=False)))
    if kind == "content":
        inner = source.get("content")
        texts = [
            as_str(b.get("text"), join(p, "text")) if k == "text" else _no(k, p)
            for p, k, b in _blocks(inner, join(sub, "content"))
        ]
        return FilePart(title, data=_text_data("\n\n".join(texts)))
    if kind == "url":
        return FilePart(title, url=req_str(source, "url", sub))
    if kind == "file":
        return FilePart(title, file_id=req_str(source, "file_id", sub))
    raise invalid(join(sub, "type"), "expected 'base64', 'text', 'content', 'url' or 'file'")


def _no(kind: str, path: str) -> str:
    raise invalid(join(path, "type"), f"unsupported content block type {kind!r} here")


def _text_data(text: str) -> str:
    return "data:text/plain;base64," + base64.b64encode(text.encode("utf-8")).decode()


def _tool_result(block: JsonMap, path: str) -> tuple[FunctionCallOutput, list[ContentPart]]:
    call_id = req_str(block, "tool_use_id", path)
    content = block.get("content")
    texts: list[str] = []
    images: list[ContentPart] = []
    if content is not None:
        for sub, kind, inner in _blocks(content, join(path, "content")):
            if kind == "text":
                texts.append(as_str(inner.get("text"), join(sub, "text")))
            elif kind in ("image", "document"):
                images.append(_part(kind, inner, sub))
            else:
                raise invalid(join(sub, "type"), f"unsupported content block type {kind!r}")
    output = "\n".join(texts)
    if opt_bool(block, "is_error", path):
        output = f"Error: {output}"
    return FunctionCallOutput(call_id, output), images


# Tools and options


def _tool(raw: object, path: str) -> FunctionTool:
    tool = as_object(raw, path)
    kind = opt_str(tool, "type", path)
    if kind not in (None, "custom"):
        raise invalid(
            join(path, "type"),
            f"unsupported tool type {kind!r}: only client tools (with input_schema) are served",
        )
    if tool.get("input_schema") is None:
        raise missing(join(path, "input_schema"))
    return FunctionTool(
        name=tool_name(tool, path, longest=128),
        description=opt_str(tool, "description", path),
        parameters=tool_schema(tool, "input_schema", path),
    )


def _tool_choice(raw: JsonMap | None) -> tuple[ToolChoice | None, bool | None]:
    if raw is None:
        return None, None
    kind = req_str(raw, "type", "tool_choice")
    parallel = False if opt_bool(raw, "disable_parallel_tool_use", "tool_choice") else None
    choice: ToolChoice
    if kind == "auto":
        choice = "auto"
    elif kind == "any":
        choice = "required"
    elif kind == "none":
        choice = "none"
    elif kind == "tool":
        choice = ForcedFunction(req_str(raw, "name", "tool_choice"))
    else:
        raise invalid("tool_choice.type", "expected 'auto', 'any', 'tool' or 'none'")
    return choice, parallel


def _stop_sequences(raw: list[Any] | None) -> tuple[str, ...]:
    return tuple(as_str(s, f"stop_sequences[{i}]") for i, s in enumerate(raw or ()))


def _reasoning_effort(thinking: JsonMap | None, max_tokens: int | None) -> str | None:
    if thinking is None:
        return None
    kind = req_str(thinking, "type", "thinking")
    if kind in ("disabled", "adaptive"):
        return None
    if kind != "enabled":
        raise invalid("thinking.type", "expected 'enabled', 'disabled' or 'adaptive'")
    budget = opt_int(thinking, "budget_tokens", "thinking", lo=MIN_THINKING_BUDGET)
    if budget is None:
        raise missing("thinking.budget_tokens")
    if max_tokens is not None and budget >= max_tokens:
        raise invalid("thinking.budget_tokens", "must be less than max_tokens")
    return effort_of(budget)


def _effort(output_config: JsonMap) -> str | None:
    effort = opt_str(output_config, "effort", "output_config")
    if effort is None:
        return None
    if effort not in EFFORTS:
        raise invalid("output_config.effort", f"expected one of {', '.join(EFFORTS)}")
    return EFFORTS[effort]


def _format(raw: JsonMap | None) -> ResponseFormat | None:
    if raw is None:
        return None
    path = "output_config.format"
    if req_str(raw, "type", path) != "json_schema":
        raise invalid(join(path, "type"), "expected 'json_schema'")
    schema = opt_object(raw, "schema", path)
    if schema is None:
        raise missing(join(path, "schema"))
    return ResponseFormat("json_schema", name="output", schema=schema)


def effort_of(budget: int) -> str:
    """The reasoning-effort bucket of a thinking budget."""
    for bound, effort in EFFORT_BUCKETS:
        if budget < bound:
            return effort
    return TOP_EFFORT


def _enum(obj: JsonMap, key: str, allowed: tuple[str, ...]) -> str | None:
    value = opt_str(obj, key)
    if value is not None and value not in allowed:
        raise invalid(key, f"must be one of {', '.join(allowed)}")
    return value
