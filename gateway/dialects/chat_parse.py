"""Parse an OpenAI Chat Completions request body into an ``AgentInvocation``.

``model`` is the agent id. Fields the gateway does not know are ignored (SDKs
add fields faster than gateways learn them); known fields are type-checked and
a wrong one is a 400 naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    ResponseFormat,
    Sampling,
    TextPart,
    ToolChoice,
)
from gateway.typed import fast_init, maker
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
    str_map,
)

_ROLES = ("system", "developer", "user", "assistant", "tool")
# The fields of the simplest requests (most of them): with no other, every other
# field takes its default.
_PLAIN = frozenset(("model", "messages", "stream", "stream_options"))
_NO_SAMPLING = Sampling()  # frozen: shared by the requests that set none
# ``AgentInvocation(...)`` without the class's call (``typed.maker``): about 3.2k instructions less.
_make_invocation = maker(AgentInvocation)


@fast_init
@dataclass(frozen=True, slots=True)
class ChatRequest:
    invocation: AgentInvocation
    include_usage: bool = False  # stream_options.include_usage


def parse_chat_request(body: object, limits: RequestLimits = DEFAULTS) -> ChatRequest:
    check_request(body, limits, items="messages")
    req = as_object(body, "body")
    agent = req_str(req, "model")
    messages = opt_list(req, "messages")
    if not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    items: list[InputItem] = []
    for i, raw in enumerate(messages):
        if type(raw) is dict and raw.get("role") == "user" and type(raw.get("content")) is str:
            items.append(Message("user", (TextPart(raw["content"]),)))  # what _message makes
        else:
            items.extend(_message(as_object(raw, f"messages[{i}]"), f"messages[{i}]"))
    if req.keys() <= _PLAIN:
        # Nothing else to read: each read below would find its field absent.
        stream, include_usage = _stream(req)
        invocation = _make_invocation(agent, tuple(items), sampling=_NO_SAMPLING, stream=stream)
        return ChatRequest(invocation, include_usage)

    n = opt_int(req, "n", lo=1)
    if n is not None and n != 1:
        raise invalid("n", "only n=1 is supported")
    max_tokens = opt_int(req, "max_completion_tokens", lo=1, hi=MAX_TOKENS)
    if max_tokens is None:
        max_tokens = opt_int(req, "max_tokens", lo=1, hi=MAX_TOKENS)
    logprobs = bool(opt_bool(req, "logprobs"))
    top_logprobs = opt_int(req, "top_logprobs", lo=0, hi=20)
    if top_logprobs is not None and not logprobs:
        raise invalid("top_logprobs", "requires 'logprobs' to be true")
    tools = tuple(_tool(t, f"tools[{i}]") for i, t in enumerate(opt_list(req, "tools") or ()))
    stream, include_usage = _stream(req)

    invocation = _make_invocation(
        agent=agent,
        input=tuple(items),
        tools=tools,
        tool_choice=_tool_choice(req.get("tool_choice")),
        parallel_tool_calls=opt_bool(req, "parallel_tool_calls"),
        sampling=Sampling(
            temperature=opt_number(req, "temperature", lo=0, hi=2),
            top_p=opt_number(req, "top_p", lo=0, hi=1),
            presence_penalty=opt_number(req, "presence_penalty", lo=-2, hi=2),
            frequency_penalty=opt_number(req, "frequency_penalty", lo=-2, hi=2),
            seed=opt_int(req, "seed"),
            stop=_stop(req.get("stop")),
        ),
        max_output_tokens=max_tokens,
        response_format=_response_format(opt_object(req, "response_format")),
        reasoning_effort=opt_str(req, "reasoning_effort"),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        user=opt_str(req, "user"),
        safety_identifier=opt_str(req, "safety_identifier"),
        prompt_cache_key=opt_str(req, "prompt_cache_key"),
        service_tier=opt_str(req, "service_tier"),
        stream=stream,
        metadata=str_map(req, "metadata"),
    )
    return ChatRequest(invocation, include_usage)


def _stream(req: JsonMap) -> tuple[bool, bool]:
    """``stream``, and whether a stream ends with a usage chunk (``include_usage``).

    The fields as most requests send them (each absent, null or a boolean; the options
    an object) read at once; anything else as ``_checked_stream`` reads it, which
    answers the same or names the field that is wrong."""
    stream = req.get("stream")
    options = req.get("stream_options")
    if stream is None or stream is True or stream is False:
        if options is None:
            return stream is True, False
        if type(options) is dict:
            usage = options.get("include_usage")
            if usage is None or usage is True or usage is False:
                return stream is True, stream is True and usage is True
    return _checked_stream(req)


def _checked_stream(req: JsonMap) -> tuple[bool, bool]:
    """``_stream``, each field read and checked in turn (a wrong one is a 400 naming it)."""
    stream = bool(opt_bool(req, "stream"))
    stream_options = opt_object(req, "stream_options") or {}
    usage_chunk = bool(opt_bool(stream_options, "include_usage", "stream_options"))
    return stream, stream and usage_chunk


def _message(msg: JsonMap, path: str) -> list[InputItem]:
    role = req_str(msg, "role", path)
    if role not in _ROLES:
        raise invalid(join(path, "role"), f"must be one of {', '.join(_ROLES)}")
    if role == "tool":
        call_id = req_str(msg, "tool_call_id", path)
        return [FunctionCallOutput(call_id, _text_only(msg.get("content"), join(path, "content")))]
    content = msg.get("content")
    if role == "assistant":
        items: list[InputItem] = []
        if content is not None:
            text = _text_only(content, join(path, "content"))
            if text:
                items.append(Message("assistant", (TextPart(text),)))
        for j, call in enumerate(opt_list(msg, "tool_calls", path) or ()):
            items.append(_tool_call(as_object(call, f"{path}.tool_calls[{j}]"), path, j))
        if not items and content is None and "tool_calls" not in msg:
            raise missing(join(path, "content"))
        return items
    if content is None:
        raise missing(join(path, "content"))
    parts = _parts(content, join(path, "content"), allow_media=role == "user")
    return [Message(role, parts)]  # type: ignore[arg-type]  # role checked above


def _tool_call(call: JsonMap, path: str, j: int) -> FunctionCall:
    sub = f"{path}.tool_calls[{j}]"
    fn = as_object(call.get("function"), join(sub, "function"))
    arguments = fn.get("arguments", "")
    return FunctionCall(
        call_id=req_str(call, "id", sub),
        name=req_str(fn, "name", join(sub, "function")),
        arguments=as_str(arguments, join(sub, "function.arguments")),
    )


def _parts(content: object, path: str, *, allow_media: bool) -> tuple[ContentPart, ...]:
    if isinstance(content, str):
        return (TextPart(content),)
    parts: list[ContentPart] = []
    for i, raw in enumerate(as_list(content, path)):
        sub = f"{path}[{i}]"
        part = as_object(raw, sub)
        kind = req_str(part, "type", sub)
        if kind == "text":
            parts.append(TextPart(as_str(part.get("text"), join(sub, "text"))))
        elif kind == "image_url" and allow_media:
            image = part.get("image_url")
            if isinstance(image, str):
                parts.append(ImagePart(image))
            else:
                image = as_object(image, join(sub, "image_url"))
                url = req_str(image, "url", join(sub, "image_url"))
                parts.append(ImagePart(url, opt_str(image, "detail", join(sub, "image_url"))))
        elif kind == "file" and allow_media:
            file = as_object(part.get("file"), join(sub, "file"))
            parts.append(
                FilePart(
                    filename=opt_str(file, "filename", join(sub, "file")),
                    data=opt_str(file, "file_data", join(sub, "file")),
                    file_id=opt_str(file, "file_id", join(sub, "file")),
                )
            )
        else:
            raise invalid(join(sub, "type"), f"unsupported content part type {kind!r}")
    return tuple(parts)


def _text_only(content: object, path: str) -> str:
    if content is None:
        return ""
    parts = _parts(content, path, allow_media=False)
    return "".join(p.text for p in parts if isinstance(p, TextPart))


def _tool(raw: object, path: str) -> FunctionTool:
    tool = as_object(raw, path)
    kind = req_str(tool, "type", path)
    if kind != "function":
        raise invalid(join(path, "type"), f"unsupported tool type {kind!r}; expected 'function'")
    fn = as_object(tool.get("function"), join(path, "function"))
    sub = join(path, "function")
    return FunctionTool(
        name=tool_name(fn, sub),
        description=opt_str(fn, "description", sub),
        parameters=tool_schema(fn, "parameters", sub),
        strict=opt_bool(fn, "strict", sub),
    )


def _tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        return raw  # type: ignore[no-any-return]
    if isinstance(raw, dict) and raw.get("type") == "function":
        fn = as_object(raw.get("function"), "tool_choice.function")
        return ForcedFunction(req_str(fn, "name", "tool_choice.function"))
    raise invalid(
        "tool_choice", "expected 'none', 'auto', 'required' or {type: 'function', function: {name}}"
    )


def _stop(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,)
    items = as_list(raw, "stop")
    if len(items) > 4:
        raise invalid("stop", "at most 4 stop sequences are allowed")
    return tuple(as_str(s, f"stop[{i}]") for i, s in enumerate(items))


def _response_format(raw: JsonMap | None) -> ResponseFormat | None:
    if raw is None:
        return None
    kind = req_str(raw, "type", "response_format")
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)  # type: ignore[arg-type]
    if kind == "json_schema":
        spec = as_object(raw.get("json_schema"), "response_format.json_schema")
        path = "response_format.json_schema"
        return ResponseFormat(
            "json_schema",
            name=req_str(spec, "name", path),
            schema=opt_object(spec, "schema", path),
            strict=opt_bool(spec, "strict", path),
            description=opt_str(spec, "description", path),
        )
    raise invalid("response_format.type", "expected 'text', 'json_object' or 'json_schema'")
