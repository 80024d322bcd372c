"""``gateway.events``: the fast ``text_delta`` and ``text_deltas`` make exactly what
``TextDelta`` makes."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.events import TextDelta, text_delta, text_deltas


@pytest.mark.parametrize("text", ["", "hi", "é ✓ \n"])
def test_text_delta_is_a_text_delta_without_logprobs(text: str) -> None:
    made = text_delta(text)
    assert type(made) is TextDelta and made == TextDelta(text) and made.logprobs is None
    assert hash(made) == hash(TextDelta(text)) and repr(made) == repr(TextDelta(text))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.text = "changed"  # type: ignore[misc]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=5), max_size=40))
def test_text_deltas_are_text_deltas_made_one_by_one(texts: list[str]) -> None:
    made = text_deltas(texts)
    assert made == [TextDelta(text) for text in texts]
    assert all(type(delta) is TextDelta and delta.logprobs is None for delta in made)
    assert [repr(delta) for delta in made] == [repr(text_delta(text)) for text in texts]
