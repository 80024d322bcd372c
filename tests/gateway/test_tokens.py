from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.invocation import (
    FilePart,
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    ImagePart,
    Message,
    Reasoning,
    TextPart,
)
from gateway.tokens import (
    MESSAGE_OVERHEAD,
    RESERVE_ITEM,
    RESERVE_MEDIA,
    estimate_input,
    estimate_output,
    estimate_text,
    input_tokens,
    reserve_input,
)
from tests.conftest import invocation


@pytest.mark.parametrize(
    ("text", "expected"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100)]
)
def test_estimate_text_rounds_up(text: str, expected: int) -> None:
    assert estimate_text(text) == expected


def test_estimate_input_counts_every_item() -> None:
    inv = invocation(
        instructions="x" * 8,  # 2
        input=(
            Message("user", (TextPart("y" * 12),)),  # 4 + 3
            FunctionCall("c", "name", "a" * 8),  # 4 + 1 + 2
            FunctionCallOutput("c", "o" * 16),  # 4 + 4
            Reasoning("r" * 4),  # 4 + 1
        ),
    )
    assert estimate_input(inv) == 2 + 3 + (1 + 2) + 4 + 1 + 4 * MESSAGE_OVERHEAD


def test_estimate_input_counts_tools() -> None:
    bare = invocation("hi")
    with_tool = invocation(
        "hi", tools=(FunctionTool("weather", "the weather", {"type": "object"}),)
    )
    assert estimate_input(with_tool) > estimate_input(bare) + estimate_text("weather")


def test_estimate_output_at_least_one_token_per_delta() -> None:
    assert estimate_output(weight=1.0, deltas=3) == 3
    assert estimate_output(weight=9.25, deltas=3) == 10
    assert estimate_output(weight=0, deltas=0) == 0


# reserve_input: an upper bound for reservations


TEXTS = {
    "ascii": "The quick brown fox jumps over the lazy dog. " * 20,
    "code": "def f(x):\n    return {'a': [x, x * 2]}\n" * 10,
    "cjk": "你好世界。今日は良い天気ですね。안녕하세요 " * 10,
    "emoji": "😀🎉👍🏽🇫🇷" * 25,
    "mixed": "Prix: 12,50 € — naïve café, 東京, 🚀 launch!",
    "digits": "3.14159265358979 " * 30,
}


@pytest.mark.parametrize("name", TEXTS)
def test_reserve_input_covers_the_estimate(name: str) -> None:
    text = TEXTS[name]
    inv = invocation(text, instructions=text[:50])
    assert reserve_input(inv) >= estimate_input(inv)
    if name in ("cjk", "emoji"):  # real tokenizers give each of these a token or more
        assert reserve_input(invocation(text)) >= len(text)


def test_reserve_input_grows_with_utf8_bytes() -> None:
    assert reserve_input(invocation("你" * 100)) >= 150  # 300 bytes
    assert reserve_input(invocation("😀" * 100)) >= 200  # 400 bytes: 2 tokens an emoji
    assert reserve_input(invocation("a" * 100)) < reserve_input(invocation("你" * 100))


def test_reserve_input_counts_images_and_files() -> None:
    text = Message("user", (TextPart("what is this?"),))
    media = Message(
        "user",
        (
            TextPart("what is this?"),
            ImagePart(url="https://example.com/a.png"),
            FilePart(filename="a.pdf", data="JVBERi0xLjQK"),
        ),
    )
    plain, rich = invocation(input=(text,)), invocation(input=(media,))
    assert reserve_input(rich) >= reserve_input(plain) + 2 * RESERVE_MEDIA
    assert reserve_input(rich) >= estimate_input(rich) + 2 * RESERVE_MEDIA


def test_reserve_input_counts_every_kind_of_item() -> None:
    items = (
        Message("user", (TextPart("y" * 12),)),
        FunctionCall("c", "name", "a" * 80),
        FunctionCallOutput("c", "o" * 160),
        Reasoning("r" * 40),
    )
    tool = FunctionTool("weather", "the weather " * 10, {"type": "object"})
    inv = invocation(instructions="x" * 8, input=items, tools=(tool,))
    assert reserve_input(inv) >= estimate_input(inv)
    for fewer in (items[1:], items[:1] + items[2:], items[:2] + items[3:], items[:3]):
        assert reserve_input(invocation(input=fewer, tools=(tool,))) < reserve_input(
            invocation(input=items, tools=(tool,))
        )
    assert reserve_input(invocation(input=items)) < reserve_input(
        invocation(input=items, tools=(tool,))
    )


def test_reserve_input_survives_a_lone_surrogate() -> None:
    assert reserve_input(invocation("a\ud800b")) >= estimate_input(invocation("a\ud800b"))


@pytest.mark.parametrize(("text", "size"), [("abc", 3), ("é" * 3, 6), ("你好", 6), ("a\ud800b", 5)])
def test_reserve_input_is_half_the_utf8_bytes_rounded_up(text: str, size: int) -> None:
    assert reserve_input(invocation(text)) == RESERVE_ITEM + -(-size // 2)


def test_input_tokens_is_reserve_and_estimate_in_one_walk() -> None:
    inv = invocation(
        instructions="be brief, ça va",
        input=(
            Message("user", (TextPart("two "), ImagePart("u"), TextPart("parts 你好"))),
            FunctionCall("c", "name", '{"a": 1}'),
            FunctionCallOutput("c", "out"),
            Reasoning("why"),
        ),
        tools=(FunctionTool("weather", None, {"type": "object"}),),
    )
    texts = ["be brief, ça va", "two parts 你好", "name", '{"a": 1}', "out", "why"]
    texts += ["weather", "", str({"type": "object"})]
    size = sum(len(t.encode()) for t in texts)
    assert input_tokens(inv) == (reserve_input(inv), estimate_input(inv))
    assert reserve_input(inv) == 5 * RESERVE_ITEM + RESERVE_MEDIA + -(-size // 2)
    estimate = sum(estimate_text(t) for t in texts) + 4 * MESSAGE_OVERHEAD
    assert estimate_input(inv) == estimate


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.text(), min_size=1, max_size=4), st.text() | st.none())
def test_a_one_text_message_counts_as_the_general_walk_counts_it(
    texts: list[str], instructions: str | None
) -> None:
    """A message of one text part takes a shorter way through ``input_tokens``; one with
    an empty part more takes the general one, and reads the same text."""
    plain = [Message("user", (TextPart(t),)) for t in texts]
    general = [Message("user", (TextPart(t), TextPart(""))) for t in texts]
    assert input_tokens(invocation(input=tuple(plain), instructions=instructions)) == (
        input_tokens(invocation(input=tuple(general), instructions=instructions))
    )
