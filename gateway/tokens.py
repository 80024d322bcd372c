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
    FunctionTool,
    ImagePart,
    InputItem,
    Message,
    TextPart,
)

ASCII_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4  # role and separators, as chat templates add them


def text_weight(text: str) -> float:
    """Estimated tokens of ``text``, unrounded (so that pieces can be added up)."""
    if text.isascii():  # most deltas: no copy of the text to count its ASCII characters
        return len(text) / ASCII_PER_TOKEN
    ascii_chars = len(text.encode("ascii", "ignore"))
    return ascii_chars / ASCII_PER_TOKEN + (len(text) - ascii_chars)


def estimate_text(text: str) -> int:
    return math.ceil(text_weight(text))


def estimate_input(invocation: AgentInvocation) -> int:
    return input_tokens(invocation)[1]


def estimate_output(weight: float, deltas: int) -> int:
    """Output tokens of ``deltas`` streamed deltas whose texts weigh ``weight`` in all."""
    return max(deltas, math.ceil(weight))


RESERVE_ITEM = 8
RESERVE_MEDIA = 1600


def reserve_input(invocation: AgentInvocation) -> int:
    """At least as many input tokens as a real tokenizer would count."""
    return input_tokens(invocation)[0]


def input_tokens(invocation: AgentInvocation) -> tuple[int, int]:
    """``(reserve_input, estimate_input)`` of ``invocation``, in one walk of its texts
    (admission needs both)."""
    instructions = invocation.instructions or ""
    estimate = estimate_text(instructions)
    size = _utf8_size(instructions)
    reserve = 0
    for item in invocation.input:
        reserve += RESERVE_ITEM
        estimate += MESSAGE_OVERHEAD
        if isinstance(item, Message):
            content = item.content
            if len(content) == 1 and type(content[0]) is TextPart:  # most messages
                text = content[0].text
                estimate += estimate_text(text)
                size += _utf8_size(text)
                continue
            reserve += RESERVE_MEDIA * sum(isinstance(part, _MEDIA) for part in content)
        for text in _texts(item):
            estimate += estimate_text(text)
            size += _utf8_size(text)
    for tool in invocation.tools:
        reserve += RESERVE_ITEM
        for text in _tool_texts(tool):
            estimate += estimate_text(text)
            size += _utf8_size(text)
    return reserve + -(-size // 2), estimate


_MEDIA = (ImagePart, FilePart)


def _utf8_size(text: str) -> int:
    """The length of ``text`` in UTF-8 (a lone surrogate as three bytes)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _texts(item: InputItem) -> tuple[str, ...]:
    """The texts of an input item that the model reads."""
    if isinstance(item, Message):
        return (item.text,)
    if isinstance(item, FunctionCall):
        return (item.name, item.arguments)
    if isinstance(item, FunctionCallOutput):
        return (item.output,)
    return (item.text,)  # Reasoning


def _tool_texts(tool: FunctionTool) -> tuple[str, ...]:
    return (tool.name, tool.description or "", str(tool.parameters or ""))
