"""``gateway.conversation.context``: stored context resolved into an invocation; the
context stored with each item's id. (Background runs, ``gateway.conversation.runs``,
are covered over HTTP and Redis by ``tests/integration/test_responses_background.py``.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis

from gateway.conversation.context import load, stored_context, with_context
from gateway.dialects.request_limits import DEFAULTS
from gateway.dialects.responses_parse import parse_responses_request
from gateway.errors import NotFound
from gateway.invocation import FunctionCall, Message, TextPart
from gateway.store.responses import ResponseStore, StoredResponse
from tests.conftest import invocation

KEY = SimpleNamespace(id="key_1")


@pytest.fixture
async def gateway() -> AsyncIterator[Any]:
    redis = FakeAsyncRedis(decode_responses=True)
    yield SimpleNamespace(responses=ResponseStore(redis, 3600))
    await redis.aclose()


def test_stored_context_names_each_item_after_its_response() -> None:
    inv = invocation("hi", input=(Message("user", (TextPart("hi"),)), FunctionCall("c", "f", "{}")))
    context = stored_context(inv, "resp_abc")
    assert [item["id"] for item in context] == ["msg_abc_in0", "fc_abc_in1"]
    assert context[0]["content"] == [{"type": "input_text", "text": "hi"}]


async def test_previous_response_and_references_are_put_in(gateway: Any) -> None:
    first = invocation("first question")
    output = [{"type": "message", "id": "msg_abc_0", "role": "assistant", "content": "answer"}]
    stored = StoredResponse({"id": "resp_abc", "output": output}, stored_context(first, "resp_abc"))
    await gateway.responses.save(KEY.id, stored)

    req = parse_responses_request(
        {"model": "echo", "previous_response_id": "resp_abc", "input": "next"}, DEFAULTS
    )
    inv = await with_context(gateway, KEY, req)
    texts = [part.text for item in inv.input for part in item.content]  # type: ignore[union-attr]
    assert texts == ["first question", "answer", "next"]

    req = parse_responses_request(
        {"model": "echo", "input": [{"type": "item_reference", "id": "msg_abc_0"}]}, DEFAULTS
    )
    inv = await with_context(gateway, KEY, req)
    assert inv.input == (Message("assistant", (TextPart("answer"),)),)


async def test_what_is_not_stored_for_this_key_is_404(gateway: Any) -> None:
    with pytest.raises(NotFound) as info:
        await load(gateway, KEY, "resp_nope", "previous_response_id")
    assert info.value.param == "previous_response_id"
    req = parse_responses_request(
        {"model": "echo", "input": [{"type": "item_reference", "id": "msg_nope_0"}]}, DEFAULTS
    )
    with pytest.raises(NotFound) as info:
        await with_context(gateway, KEY, req)
    assert info.value.param == "input[0]"
