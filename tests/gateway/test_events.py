"""``gateway.events``: the fast ``text_delta`` makes exactly what ``TextDelta`` makes."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.events import TextDelta, text_delta


@pytest.mark.parametrize("text", ["", "hi", "é ✓ \n"])
def test_text_delta_is_a_text_delta_without_logprobs(text: str) -> None:
    made = text_delta(text)
    assert type(made) is TextDelta and made == TextDelta(text) and made.logprobs is None
    assert hash(made) == hash(TextDelta(text)) and repr(made) == repr(TextDelta(text))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.text = "changed"  # type: ignore[misc]
