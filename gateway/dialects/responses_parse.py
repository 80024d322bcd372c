"""Parse an Open Responses request (``POST /v1/responses``) into an ``AgentInvocation``.

Every field of the 2026-04-24 specification is accepted: honoured by the
gateway (``instructions``, ``allowed_tools``, ``metadata`` limits,
``previous_response_id``, ``store``), passed to the backend in the invocation,
or echoed in the response object. Context from ``previous_response_id`` and
``item_reference`` items needs the store, so the handler resolves them with
``ResponsesRequest.invocation_with``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from gateway.amounts import MAX_TOKENS
from gateway.dialects.request_limits import DEFAULTS, RequestLimits, check_request
from gateway.dialects.tools import tool_name, tool_schema
from gateway.invocation import (
    AgentInvocation,
    ForcedFunction,
    FunctionTool,
    InputItem,
    Message,
    ResponseFormat,
    Sampling,
    TextPart,
    ToolChoice,
)
from gateway.typed import evolve, fast_init, maker
from gateway.wire.fields import (
    JsonMap,
    as_list,
    as_object,
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
    str_map,
)
from gateway.wire.responses_items import ItemReference, parse_item

_EFFORTS = ("none", "low", "medium", "high", "xhigh")
_SUMMARIES = ("auto", "concise", "detailed")
_TRUNCATION = ("auto", "disabled")
_SERVICE_TIERS = ("auto", "default", "flex", "priority")
_VERBOSITY = ("low", "medium", "high")
# ``AgentInvocation(...)`` without the class's call (``typed.maker``): about 3.2k instructions less.
_make_invocation = maker(AgentInvocation)
_INCLUDE = ("reasoning.encrypted_content", "message.output_text.logprobs")


@fast_init
@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    invocation: AgentInvocation  # its input: this request's own items, references left out
    items: tuple[InputItem | ItemReference, ...]
    previous_response_id: str | None
    store: bool
    background: bool
    echo: Mapping[str, Any]  # the response object's fields that repeat the request

    def invocation_with(
        self, context: Sequence[InputItem], referenced: Mapping[str, InputItem]
    ) -> AgentInvocation:
        """The invocation with earlier context first and each reference replaced by its item."""
        items = [referenced[i.id] if isinstance(i, ItemReference) else i for i in self.items]
        return evolve(self.invocation, input=(*context, *items))


def parse_responses_request(body: object, limits: RequestLimits = DEFAULTS) -> ResponsesRequest:
    check_request(body, limits, items="input")
    req = as_object(body, "body")
    agent = req_str(req, "model")
    previous = opt_str(req, "previous_response_id")
    items = _input(req.get("input"), previous is not None)

    tools = tuple(_tool(t, f"tools[{i}]") for i, t in enumerate(opt_list(req, "tools") or ()))
    raw_choice = req.get("tool_choice")
    tools_for_backend, choice = _tool_choice(raw_choice, tools)
    text = opt_object(req, "text") or {}
    fmt = _format(opt_object(text, "format", "text"))
    verbosity = _enum(text, "verbosity", _VERBOSITY, "text")
    reasoning = opt_object(req, "reasoning")
    effort = _enum(reasoning or {}, "effort", _EFFORTS, "reasoning")
    summary = _enum(reasoning or {}, "summary", _SUMMARIES, "reasoning")
    include = tuple(
        _one_of(v, _INCLUDE, f"include[{i}]") for i, v in enumerate(opt_list(req, "include") or ())
    )
    stream_options = opt_object(req, "stream_options")
    if stream_options is not None:
        opt_bool(stream_options, "include_obfuscation", "stream_options")
    sampling = Sampling(
        temperature=opt_number(req, "temperature", lo=0, hi=2),
        top_p=opt_number(req, "top_p", lo=0, hi=1),
        presence_penalty=opt_number(req, "presence_penalty", lo=-2, hi=2),
        frequency_penalty=opt_number(req, "frequency_penalty", lo=-2, hi=2),
    )
    instructions = opt_str(req, "instructions")
    metadata = str_map(req, "metadata")
    parallel = opt_bool(req, "parallel_tool_calls")
    max_output = opt_int(req, "max_output_tokens", lo=16, hi=MAX_TOKENS)
    max_tool_calls = opt_int(req, "max_tool_calls", lo=1)
    top_logprobs = opt_int(req, "top_logprobs", lo=0, hi=20)
    truncation = _enum(req, "truncation", _TRUNCATION) or "disabled"
    service_tier = _enum(req, "service_tier", _SERVICE_TIERS)
    store = opt_bool(req, "store")
    background = bool(opt_bool(req, "background"))
    stream = bool(opt_bool(req, "stream"))

    invocation = _make_invocation(
        agent=agent,
        input=tuple(i for i in items if not isinstance(i, ItemReference)),
        instructions=instructions,
        tools=tools_for_backend,
        tool_choice=choice,
        parallel_tool_calls=parallel,
        sampling=sampling,
        max_output_tokens=max_output,
        response_format=fmt,
        reasoning_effort=effort,
        reasoning_summary=summary,
        text_verbosity=verbosity,
        top_logprobs=top_logprobs,
        max_tool_calls=max_tool_calls,
        service_tier=service_tier,
        prompt_cache_key=opt_str(req, "prompt_cache_key"),
        safety_identifier=opt_str(req, "safety_identifier"),
        include=include,
        stream=stream,
        metadata=metadata,
    )
    echo = {
        "instructions": instructions,
        "tools": [_tool_json(t) for t in tools],
        "tool_choice": _choice_json(raw_choice),
        "truncation": truncation,
        "parallel_tool_calls": True if parallel is None else parallel,
        "text": {"format": _format_json(fmt)} | ({"verbosity": verbosity} if verbosity else {}),
        "top_p": 1.0 if sampling.top_p is None else sampling.top_p,
        "temperature": 1.0 if sampling.temperature is None else sampling.temperature,
        "presence_penalty": sampling.presence_penalty or 0.0,
        "frequency_penalty": sampling.frequency_penalty or 0.0,
        "top_logprobs": top_logprobs or 0,
        "reasoning": {"effort": effort, "summary": summary} if reasoning is not None else None,
        "max_output_tokens": max_output,
        "max_tool_calls": max_tool_calls,
        "service_tier": service_tier or "default",
        "metadata": metadata,
        "safety_identifier": invocation.safety_identifier,
        "prompt_cache_key": invocation.prompt_cache_key,
    }
    return ResponsesRequest(
        invocation=invocation,
        items=items,
        previous_response_id=previous,
        store=True if store is None else store,
        background=background,
        echo=echo,
    )


def _input(raw: object, has_previous: bool) -> tuple[InputItem | ItemReference, ...]:
    if isinstance(raw, str):
        return (Message("user", (TextPart(raw),)),)
    if raw is None:
        if has_previous:
            return ()
        raise missing("input")
    items = tuple(parse_item(item, f"input[{i}]") for i, item in enumerate(as_list(raw, "input")))
    if not items and not has_previous:
        raise invalid("input", "must not be empty")
    return items


def _tool(raw: object, path: str) -> FunctionTool:
    tool = as_object(raw, path)
    kind = req_str(tool, "type", path)
    if kind != "function":
        raise invalid(join(path, "type"), f"unsupported tool type {kind!r}; expected 'function'")
    if "function" in tool and "name" not in tool:
        raise invalid(
            join(path, "name"),
            "Open Responses tools are flat: {type, name, parameters}, not nested under 'function'",
        )
    return FunctionTool(
        name=tool_name(tool, path),
        description=opt_str(tool, "description", path),
        parameters=tool_schema(tool, "parameters", path),
        strict=opt_bool(tool, "strict", path),
    )


def _tool_json(tool: FunctionTool) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
        "strict": tool.strict,
    }


def _tool_choice(
    raw: Any, tools: tuple[FunctionTool, ...]
) -> tuple[tuple[FunctionTool, ...], ToolChoice | None]:
    """The tools the backend sees and the choice it gets; ``allowed_tools`` is enforced here."""
    if raw is None:
        return tools, None
    if raw in ("none", "auto", "required"):
        return tools, raw
    choice = as_object(raw, "tool_choice")
    kind = choice.get("type")
    names = {t.name for t in tools}
    if kind == "function":
        name = req_str(choice, "name", "tool_choice")
        if name not in names:
            raise invalid("tool_choice.name", f"no tool named {name!r} in 'tools'")
        return tools, ForcedFunction(name)
    if kind == "allowed_tools":
        allowed: list[str] = []
        for i, raw_tool in enumerate(as_list(choice.get("tools"), "tool_choice.tools")):
            entry = as_object(raw_tool, f"tool_choice.tools[{i}]")
            name = req_str(entry, "name", f"tool_choice.tools[{i}]")
            if name not in names:
                raise invalid(f"tool_choice.tools[{i}].name", f"no tool named {name!r} in 'tools'")
            allowed.append(name)
        mode = choice.get("mode") or "auto"
        if mode not in ("none", "auto", "required"):
            raise invalid("tool_choice.mode", "must be 'none', 'auto' or 'required'")
        # Enforced by offering the backend only the allowed tools: it cannot call the others.
        return tuple(t for t in tools if t.name in allowed), cast(ToolChoice, mode)
    raise invalid(
        "tool_choice",
        "expected 'none', 'auto', 'required', {type: 'function', name} "
        "or {type: 'allowed_tools', tools, mode}",
    )


def _choice_json(raw: Any) -> Any:
    """``tool_choice`` as the response echoes it (``allowed_tools`` always with a mode)."""
    if raw is None:
        return "auto"
    if isinstance(raw, dict) and raw.get("type") == "allowed_tools":
        tools = [{"type": "function", "name": t["name"]} for t in raw["tools"]]
        return {"type": "allowed_tools", "tools": tools, "mode": raw.get("mode") or "auto"}
    if isinstance(raw, dict):
        return {"type": "function", "name": raw["name"]}
    return raw


def _format(raw: JsonMap | None) -> ResponseFormat | None:
    if raw is None:
        return None
    kind = req_str(raw, "type", "text.format")
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)  # type: ignore[arg-type]
    if kind == "json_schema":
        return ResponseFormat(
            "json_schema",
            name=req_str(raw, "name", "text.format"),
            schema=opt_object(raw, "schema", "text.format"),
            strict=opt_bool(raw, "strict", "text.format"),
            description=opt_str(raw, "description", "text.format"),
        )
    raise invalid("text.format.type", "expected 'text', 'json_object' or 'json_schema'")


def _format_json(fmt: ResponseFormat | None) -> dict[str, Any]:
    if fmt is None or fmt.type != "json_schema":
        return {"type": fmt.type if fmt else "text"}
    # The published 2026-04-24 schema (and openresponses-types) type the echoed
    # ``schema`` as null only; the schema itself went to the backend.
    return {
        "type": "json_schema",
        "name": fmt.name,
        "description": fmt.description,
        "schema": None,
        "strict": bool(fmt.strict),
    }


def _enum(obj: JsonMap, key: str, allowed: Sequence[str], path: str = "") -> str | None:
    value = opt_str(obj, key, path)
    return None if value is None else _one_of(value, allowed, join(path, key))


def _one_of(value: object, allowed: Sequence[str], path: str) -> str:
    if value not in allowed:
        raise invalid(path, f"must be one of {', '.join(allowed)}")
    return str(value)
