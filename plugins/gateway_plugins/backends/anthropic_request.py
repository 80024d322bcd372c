"""The Anthropic Messages wire format, upstream side: the request.

``messages_body`` turns an invocation into a streamed ``POST /v1/messages``
body (``anthropic_stream`` reads the answer). No HTTP here, so it is tested as a
pure function.

Request mapping (what an operator should know):

- ``system``: the invocation's ``instructions``, then the text of every
  ``system``/``developer`` message wherever it stood, joined by a blank line
  (Anthropic has no mid-conversation system turn).
- ``messages`` alternate ``user``/``assistant``: consecutive items of one role
  are merged into one message, and a user message's ``tool_result`` blocks are
  moved before its other blocks, as Anthropic requires. Content is always a
  list of blocks; empty text parts are dropped (Anthropic rejects them).
- Images: a ``data:`` URL becomes a ``base64`` source, any other URL a ``url``
  source. Files: a PDF (``data:`` URL, bare base64, or URL) becomes a
  ``document`` block; a ``text/*`` ``data:`` URL becomes a plain-text
  document. File ids (OpenAI's Files API) cannot be resolved upstream: an
  ``InvalidRequest``.
- A ``FunctionCall`` becomes an assistant ``tool_use`` block whose ``input``
  is the parsed ``arguments``; arguments that are not a JSON object are an
  ``InvalidRequest`` (param ``input``): Anthropic only takes an object, and
  guessing would send the model a call it never made. A ``FunctionCallOutput``
  becomes a user ``tool_result`` block. ``Reasoning`` items are dropped: they
  carry no Anthropic signature, and Anthropic rejects unsigned thinking.
- ``max_tokens`` (required by Anthropic): the invocation's
  ``max_output_tokens``, else the route's, else the backend's
  ``default_max_tokens``.
- ``reasoning_effort`` -> ``thinking: {type: enabled, budget_tokens}``:
  minimal/low 1024, medium 4096, high 16384, xhigh 32768; ``none`` (or no
  effort) sends no ``thinking``; any other value is an ``InvalidRequest``.
  The budget is capped at ``max_tokens - 1``; below Anthropic's minimum of
  1024 thinking is left off. Thinking is also left off when the tool choice
  forces a tool (Anthropic refuses both together) and while a tool loop is
  open (the last assistant turn made tool calls: Anthropic would demand its
  signed thinking blocks back, which no canonical item carries). With
  thinking on, ``temperature`` and ``top_p`` are not sent (Anthropic only
  accepts their defaults then).
- Tools: ``{name, description, input_schema}``; a schema without a ``type``
  (or no schema) gets ``"type": "object"``, which Anthropic requires.
- ``tool_choice``: auto -> ``auto``, required -> ``any``, none -> ``none``,
  a forced function -> ``tool``; ``parallel_tool_calls: false`` adds
  ``disable_parallel_tool_use: true`` (to ``auto`` if no choice was given).
  Tools and choice are only sent when there are tools.
- ``stop`` -> ``stop_sequences``; ``metadata.user_id`` from ``user`` (else
  ``safety_identifier``). Not forwarded, having no Anthropic equivalent:
  ``seed``, penalties, ``response_format``, ``top_logprobs``, an OpenAI
  ``service_tier`` (Anthropic's ``auto`` and ``standard_only`` are, as is
  ``speed``), ``prompt_cache_key``, the client's ``metadata``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from gateway.plugin import (
    AgentInvocation,
    FilePart,
    ForcedFunction,
    FunctionCall,
    FunctionCallOutput,
    ImagePart,
    InvalidRequest,
    Message,
    TextPart,
)

THINKING_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 1024,
    "medium": 4096,
    "high": 16384,
    "xhigh": 32768,
}
MIN_THINKING_BUDGET = 1024


def messages_body(invocation: AgentInvocation, model: str, max_tokens: int) -> dict[str, Any]:
    """The streamed Messages API request for ``invocation``."""
    system, turns = _conversation(invocation)
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens}
    if system:
        body["system"] = system
    body["messages"] = turns
    if invocation.tools:
        body["tools"] = [
            {
                "name": t.name,
                **({"description": t.description} if t.description else {}),
                "input_schema": {"type": "object", **(t.parameters or {})},
            }
            for t in invocation.tools
        ]
        choice = _tool_choice(invocation)
        if choice is not None:
            body["tool_choice"] = choice
    thinking = _thinking(invocation, max_tokens, turns)
    if thinking is not None:
        body["thinking"] = thinking
    s = invocation.sampling
    if s.stop:
        body["stop_sequences"] = list(s.stop)
    if thinking is None:
        if s.temperature is not None:
            body["temperature"] = s.temperature
        if s.top_p is not None:
            body["top_p"] = s.top_p
    user = invocation.user or invocation.safety_identifier
    if user:
        body["metadata"] = {"user_id": user}
    # Only on a route that allows them (gateway.price_fields); OpenAI's tiers have no
    # Anthropic equivalent.
    if invocation.service_tier in ("auto", "standard_only"):
        body["service_tier"] = invocation.service_tier
    if invocation.speed is not None:
        body["speed"] = invocation.speed
    body["stream"] = True
    return body


def _tool_choice(invocation: AgentInvocation) -> dict[str, Any] | None:
    choice = invocation.tool_choice
    out: dict[str, Any]
    if isinstance(choice, ForcedFunction):
        out = {"type": "tool", "name": choice.name}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "auto" or invocation.parallel_tool_calls is False:
        out = {"type": "auto"}
    else:
        return None
    if invocation.parallel_tool_calls is False:
        out["disable_parallel_tool_use"] = True
    return out


def _thinking(
    invocation: AgentInvocation, max_tokens: int, turns: list[dict[str, Any]]
) -> dict[str, Any] | None:
    effort = invocation.reasoning_effort
    if effort is None or effort == "none":
        return None
    budget = THINKING_BUDGETS.get(effort)
    if budget is None:
        raise InvalidRequest(
            f"Unsupported reasoning effort {effort!r} for this agent; use one of "
            f"none, {', '.join(THINKING_BUDGETS)}.",
            param="reasoning_effort",
        )
    budget = min(budget, max_tokens - 1)
    if budget < MIN_THINKING_BUDGET:
        return None
    if isinstance(invocation.tool_choice, ForcedFunction) or invocation.tool_choice == "required":
        return None
    if _open_tool_loop(turns):
        return None
    return {"type": "enabled", "budget_tokens": budget}


def _open_tool_loop(turns: list[dict[str, Any]]) -> bool:
    """Whether the last assistant turn called tools (its results are what follows)."""
    for turn in reversed(turns):
        if turn["role"] == "assistant":
            return any(b["type"] == "tool_use" for b in turn["content"])
    return False


def _conversation(invocation: AgentInvocation) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = [invocation.instructions] if invocation.instructions else []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for item in invocation.input:
        if isinstance(item, Message):
            if item.role in ("system", "developer"):
                if item.text:
                    system.append(item.text)
            else:
                add(item.role, [_block(p, item.role) for p in item.content if _keep(p)])
        elif isinstance(item, FunctionCall):
            add(
                "assistant",
                [
                    {
                        "type": "tool_use",
                        "id": item.call_id,
                        "name": item.name,
                        "input": _arguments(item),
                    }
                ],
            )
        elif isinstance(item, FunctionCallOutput):
            add(
                "user",
                [{"type": "tool_result", "tool_use_id": item.call_id, "content": item.output}],
            )
        # Reasoning: dropped (no Anthropic signature to replay it with).
    for turn in turns:
        if turn["role"] == "user":  # tool results first, as Anthropic requires
            blocks = turn["content"]
            turn["content"] = [b for b in blocks if b["type"] == "tool_result"] + [
                b for b in blocks if b["type"] != "tool_result"
            ]
    if not turns:
        raise InvalidRequest(
            "The conversation needs at least one user or assistant message.", param="messages"
        )
    return "\n\n".join(system), turns


def _keep(part: object) -> bool:
    return not (isinstance(part, TextPart) and not part.text)


def _block(part: object, role: str) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if role == "assistant":
        raise InvalidRequest("Assistant messages may only carry text.", param="messages")
    if isinstance(part, ImagePart):
        if part.file_id is not None or not part.url:
            raise InvalidRequest(
                "File ids cannot be sent to this agent; send the image as a URL or data: URL.",
                param="image_url",
            )
        if part.url.startswith("data:"):
            media_type, data = _data_url(part.url)
            return {
                "type": "image",
                "source": {"type": "base64", "media_type": media_type, "data": data},
            }
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    if isinstance(part, FilePart):
        return _document(part)
    raise InvalidRequest("This content part cannot be sent to this agent.", param="messages")


def _document(part: FilePart) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "document"}
    if part.data:
        if part.data.startswith("data:"):
            media_type, data = _data_url(part.data)
        else:
            media_type, data = "application/pdf", part.data
        if media_type == "application/pdf":
            block["source"] = {"type": "base64", "media_type": media_type, "data": data}
        elif media_type.startswith("text/"):
            try:
                text = base64.b64decode(data, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidRequest(
                    "The file's data is not base64 of UTF-8 text.", param="file_data"
                ) from None
            block["source"] = {"type": "text", "media_type": "text/plain", "data": text}
        else:
            raise InvalidRequest(
                f"Files of type {media_type} cannot be sent to this agent; "
                "send a PDF or a text file.",
                param="file_data",
            )
    elif part.url:
        block["source"] = {"type": "url", "url": part.url}
    else:
        raise InvalidRequest(
            "File ids cannot be sent to this agent; send the file's data.", param="file_id"
        )
    if part.filename:
        block["title"] = part.filename
    return block


def _data_url(url: str) -> tuple[str, str]:
    """``(media type, base64 data)`` of a base64 ``data:`` URL."""
    header, sep, data = url[len("data:") :].partition(",")
    params = header.split(";")
    if not sep or "base64" not in params[1:] or not params[0]:
        raise InvalidRequest(
            "A data: URL must look like data:<media type>;base64,<data>.", param="url"
        )
    return params[0].lower(), data


def _arguments(call: FunctionCall) -> dict[str, Any]:
    if not call.arguments.strip():
        return {}
    try:
        value = orjson.loads(call.arguments)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"The arguments of function call '{call.call_id}' are not a JSON object.",
            param="input",
        )
    return value
