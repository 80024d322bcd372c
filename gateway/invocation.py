"""The canonical agent invocation every ingress dialect parses into.

Dialects build an ``AgentInvocation``; backends read it. Nothing here knows a
wire format: a Chat Completions ``messages`` array and an Open Responses
``input`` array both become a tuple of ``InputItem``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from gateway.typed import fast_init

JsonObject = Mapping[str, object]
"""A parsed JSON object passed through untouched (tool parameters, JSON schemas)."""

Role = Literal["system", "developer", "user", "assistant"]


@fast_init
@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@fast_init
@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image by URL (a ``data:`` URL carries the bytes inline) or by uploaded file id."""

    url: str = ""
    detail: str | None = None
    file_id: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class FilePart:
    filename: str | None = None
    data: str | None = None  # base64 or data: URL, as the client sent it
    url: str | None = None
    file_id: str | None = None


ContentPart = TextPart | ImagePart | FilePart


@fast_init
@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: tuple[ContentPart, ...]

    @property
    def text(self) -> str:
        """The message's text parts joined, for backends that only take text."""
        content = self.content
        if len(content) == 1 and type(content[0]) is TextPart:  # most messages
            return content[0].text
        return "".join(p.text for p in content if isinstance(p, TextPart))


@fast_init
@dataclass(frozen=True, slots=True)
class FunctionCall:
    """A call the model made earlier in the conversation."""

    call_id: str
    name: str
    arguments: str  # a JSON document, as produced by the model


@fast_init
@dataclass(frozen=True, slots=True)
class FunctionCallOutput:
    """The client's result for an earlier ``FunctionCall``."""

    call_id: str
    output: str


@fast_init
@dataclass(frozen=True, slots=True)
class Reasoning:
    """Reasoning the model produced earlier, replayed as context."""

    text: str = ""
    encrypted_content: str | None = None


InputItem = Message | FunctionCall | FunctionCallOutput | Reasoning


@fast_init
@dataclass(frozen=True, slots=True)
class FunctionTool:
    name: str
    description: str | None = None
    parameters: JsonObject | None = None  # a JSON Schema object
    strict: bool | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class ForcedFunction:
    """``tool_choice`` naming the one function the model must call."""

    name: str


ToolChoice = Literal["auto", "none", "required"] | ForcedFunction


@fast_init
@dataclass(frozen=True, slots=True)
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema: JsonObject | None = None
    strict: bool | None = None
    description: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class Sampling:
    temperature: float | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()


@fast_init
@dataclass(frozen=True, slots=True)
class AgentInvocation:
    """One call of one agent, independent of the dialect it arrived in.

    ``agent`` is the gateway's agent id (a ``routes`` key); the upstream model
    name is the route's business, not the client's. Who calls, and the request's
    id, travel beside it (``gateway.plugin.CallContext``), not in it.
    """

    agent: str
    input: tuple[InputItem, ...]
    instructions: str | None = None
    tools: tuple[FunctionTool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    sampling: Sampling = field(default_factory=Sampling)
    max_output_tokens: int | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = None
    reasoning_summary: str | None = None
    text_verbosity: str | None = None
    # Chat Completions' ``logprobs``: a backend that cannot return them refuses the
    # request (400) rather than answer without them.
    logprobs: bool = False
    top_logprobs: int | None = None  # with ``logprobs``; Open Responses' is only echoed
    max_tool_calls: int | None = None
    service_tier: str | None = None
    speed: str | None = None  # Anthropic's fast mode (see gateway.price_fields)
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    user: str | None = None
    include: tuple[str, ...] = ()  # extra output the client asked for (Open Responses)
    stream: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)

    def last_user_text(self) -> str:
        for item in reversed(self.input):
            if isinstance(item, Message) and item.role == "user":
                return item.text
        return ""
