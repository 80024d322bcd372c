"""Token estimates for when an upstream does not report usage.

No tokenizer data can be downloaded at run time, so the estimate is a
documented heuristic: a text costs ceil(characters / 4) tokens, and a streamed
output at least one token per delta (upstreams stream one or more tokens per
delta). It errs towards charging a little more than an exact count.
"""

from __future__ import annotations

from gateway.invocation import (
    AgentInvocation,
    FunctionCall,
    FunctionCallOutput,
    Message,
    Reasoning,
)

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4  # role and separators, as chat templates add them


def estimate_text(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate_input(invocation: AgentInvocation) -> int:
    total = estimate_text(invocation.instructions or "")
    for item in invocation.input:
        total += MESSAGE_OVERHEAD
        if isinstance(item, Message):
            total += estimate_text(item.text)
        elif isinstance(item, FunctionCall):
            total += estimate_text(item.name) + estimate_text(item.arguments)
        elif isinstance(item, FunctionCallOutput):
            total += estimate_text(item.output)
        elif isinstance(item, Reasoning):
            total += estimate_text(item.text)
    for tool in invocation.tools:
        total += estimate_text(tool.name) + estimate_text(tool.description or "")
        total += estimate_text(str(tool.parameters or ""))
    return total


def estimate_output(chars: int, deltas: int) -> int:
    return max(deltas, -(-chars // CHARS_PER_TOKEN))
