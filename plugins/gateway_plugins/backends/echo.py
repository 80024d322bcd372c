"""``echo``: a deterministic demo runtime with no network.

It streams back the last user message word by word (one token per word), or,
when tools are declared and the conversation does not end in a tool result,
calls the first tool (or the one ``tool_choice`` forces) with arguments that
satisfy its JSON schema. After a tool result it reports what the tool
returned. Its usage is exact for its own tokenisation: input tokens by the
gateway's estimator, one output token per streamed delta. It is the default
route of ``gateway.yaml`` and the test seam for everything behind a backend.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson

from gateway.plugin import (
    AgentInvocation,
    BackendPlugin,
    Batch,
    CallContext,
    Completed,
    FinishReason,
    ForcedFunction,
    FunctionCallOutput,
    FunctionTool,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    Usage,
    estimate_input,
)
from gateway_plugins.backends.schema_example import example
from gateway_plugins.backends.unsupported import refuse_logprobs

_WORD = re.compile(r"\S+\s*|\s+")
EMPTY_REPLY = "Hello from the echo agent. Say something and I will repeat it."


@dataclass(frozen=True, slots=True)
class EchoOptions:
    chunk_delay: float = 0.0  # seconds between streamed deltas (to try slow streams)
    reasoning: bool = False  # emit a short reasoning text before answering


class EchoBackend:
    def __init__(self, name: str, options: EchoOptions) -> None:
        self.name = name
        self.options = options

    async def invoke(self, invocation: AgentInvocation, ctx: CallContext) -> AsyncIterator[Batch]:
        refuse_logprobs(invocation, "echo")
        limit = invocation.max_output_tokens or ctx.route.max_output_tokens
        produced = 0
        reasoning = 0
        if self.options.reasoning:
            for word in _words(f"The user wants {len(invocation.input)} items echoed."):
                await self._pause()
                reasoning += 1
                yield (ReasoningDelta(word),)
        tool = _tool_to_call(invocation)
        finish: FinishReason = "stop"
        if tool is not None:
            call_id = "call_" + hashlib.sha256(ctx.charge_id.encode()).hexdigest()[:24]
            yield (ToolCallStarted(call_id, tool.name),)
            arguments = orjson.dumps(example(tool.parameters)).decode()
            for piece in _split(arguments, 3):
                await self._pause()
                produced += 1
                yield (ToolCallArgumentsDelta(call_id, piece),)
            finish = "tool_calls"
        else:
            for word in _words(_reply(invocation)):
                if limit is not None and produced >= limit:
                    finish = "length"
                    break
                await self._pause()
                produced += 1
                yield (TextDelta(word),)
        usage = Usage(
            input_tokens=estimate_input(invocation),
            output_tokens=produced + reasoning,
            reasoning_tokens=reasoning,
        )
        yield (usage,)
        yield (Completed(finish),)

    async def _pause(self) -> None:
        if self.options.chunk_delay:
            await asyncio.sleep(self.options.chunk_delay)

    async def aclose(self) -> None:
        return None


def _reply(invocation: AgentInvocation) -> str:
    last = invocation.input[-1] if invocation.input else None
    if isinstance(last, FunctionCallOutput):
        return f"The tool returned: {last.output}"
    text = invocation.last_user_text()
    return text if text.strip() else EMPTY_REPLY


def _tool_to_call(invocation: AgentInvocation) -> FunctionTool | None:
    choice = invocation.tool_choice
    if not invocation.tools or choice == "none":
        return None
    if invocation.input and isinstance(invocation.input[-1], FunctionCallOutput):
        return None  # answer the tool result instead of calling again
    if isinstance(choice, ForcedFunction):
        return next((t for t in invocation.tools if t.name == choice.name), None)
    return invocation.tools[0]


def _words(text: str) -> list[str]:
    """Split into deltas that concatenate back to ``text`` exactly."""
    return _WORD.findall(text)


def _split(text: str, parts: int) -> list[str]:
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


PLUGIN = BackendPlugin(options=EchoOptions, create=EchoBackend)
