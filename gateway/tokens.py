"""Token estimates: for reservations, and for when an upstream does not report usage.

No tokenizer data can be downloaded at run time, so both are documented
heuristics.

- Charging (``estimate_input``, ``estimate_output``): a text weighs one token
  per 4 ASCII characters plus one per other character (CJK, accents, emoji),
  rounded up, plus 4 per input item; a streamed output at least one token per
  delta (upstreams stream one or more tokens per delta). Measured against
  cl100k_base on ``tests/gateway/corpus`` by ``test_token_corpus.py``.
- Reserving (``reserve_input``): an upper bound, so that a real tokenizer's
  count stays under it: ceil(UTF-8 bytes / 2) (English runs about 4 bytes per
  token, CJK about 3 bytes per token and character), plus 8 per item and 1,600
  per image or file.
"""

from __future__ import annotations

import math

from gateway.invocation import (
    AgentInvocation,
    FilePart,
    FunctionCall,
    FunctionCallOutput,
    ImagePart,
    Message,
    Reasoning,
)

ASCII_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4  # role and separators, as chat templates add them


def text_weight(text: str) -> float:
    """Estimated tokens of ``text``, unrounded (so that pieces can be added up)."""
    ascii_chars = len(text.encode("ascii", "ignore"))
    return ascii_chars / ASCII_PER_TOKEN + (len(text) - ascii_chars)


def estimate_text(text: str) -> int:
    return math.ceil(text_weight(text))


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


def estimate_output(weight: float, deltas: int) -> int:
    """Output tokens of ``deltas`` streamed deltas whose texts weigh ``weight`` in all."""
    return max(deltas, math.ceil(weight))


RESERVE_ITEM = 8
RESERVE_MEDIA = 1600


def reserve_input(invocation: AgentInvocation) -> int:
    """At least as many input tokens as a real tokenizer would count."""
    texts: list[str] = [invocation.instructions or ""]
    total = 0
    for item in invocation.input:
        total += RESERVE_ITEM
        if isinstance(item, Message):
            for part in item.content:
                if isinstance(part, ImagePart | FilePart):
                    total += RESERVE_MEDIA
            texts.append(item.text)
        elif isinstance(item, FunctionCall):
            texts += (item.name, item.arguments)
        elif isinstance(item, FunctionCallOutput):
            texts.append(item.output)
        elif isinstance(item, Reasoning):
            texts.append(item.text)
    for tool in invocation.tools:
        total += RESERVE_ITEM
        texts += (tool.name, tool.description or "", str(tool.parameters or ""))
    size = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)
    return total + -(-size // 2)
