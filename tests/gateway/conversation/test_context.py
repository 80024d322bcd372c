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
from gateway.errors import InvalidRequest, NotFound
from gateway.invocation import FunctionCall, Message, TextPart
from gateway.route import Route
from gateway.settings import ResponsesSettings
from gateway.store.policy import StoragePolicy, storage_policy
from gateway.store.responses import ResponseStore, StoredResponse
from tests.conftest import invocation

KEY = SimpleNamespace(id="key_1")


class _Gateway(SimpleNamespace):
    """What the context needs of a ``Gateway``: its store and the storage policy,
    read from ``config`` as the real one reads it."""

    def storage(self, agent: str) -> StoragePolicy:
        return storage_policy(self.config.responses, self.config.routes.get(agent), agent)


@pytest.fixture
async def gateway() -> AsyncIterator[Any]:
    redis = FakeAsyncRedis(decode_responses=True)
    config = SimpleNamespace(responses=ResponsesSettings(), routes={"private": PRIVATE})
    yield _Gateway(responses=ResponseStore(redis), config=config)
    await redis.aclose()


PRIVATE = Route(backend="b", store="never")


def test_stored_context_names_each_item_after_its_response() -> None:
    inv = invocation("hi", input=(Message("user", (TextPart("hi"),)), FunctionCall("c", "f", "{}")))
    context = stored_context(inv, "resp_abc")
    assert [item["id"] for item in context] == ["msg_abc_in0", "fc_abc_in1"]
    assert context[0]["content"] == [{"type": "input_text", "text": "hi"}]


async def test_previous_response_and_references_are_put_in(gateway: Any) -> None:
    first = invocation("first question")
    output = [{"type": "message", "id": "msg_abc_0", "role": "assistant", "content": "answer"}]
    context = stored_context(first, "resp_abc")
    stored = StoredResponse({"id": "resp_abc", "model": "echo", "output": output}, context)
    await gateway.responses.save(KEY.id, stored, 60_000)

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


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"previous_response_id": "resp_abc", "input": "next"}, "previous_response_id"),
        ({"background": True, "input": "hi"}, "background"),
        (
            {"input": [{"role": "user", "content": "x"}, {"type": "item_reference", "id": "m"}]},
            "input[1]",
        ),
    ],
)
async def test_what_needs_storage_is_400_when_the_agent_stores_nothing(
    gateway: Any, body: dict[str, Any], param: str
) -> None:
    req = parse_responses_request({"model": "private", **body}, DEFAULTS)
    with pytest.raises(InvalidRequest) as info:
        await with_context(gateway, KEY, req)
    assert info.value.param == param and info.value.code == "storage_disabled"
    assert "Storage is off for agent 'private'" in info.value.message
    plain = parse_responses_request({"model": "private", "input": "hi", "store": True}, DEFAULTS)
    assert (await with_context(gateway, KEY, plain)).input  # store: true alone is served


async def test_what_was_stored_before_storage_was_turned_off_reads_as_absent(
    gateway: Any,
) -> None:
    stored = StoredResponse({"id": "resp_old", "model": "private", "output": []}, [])
    await gateway.responses.save(KEY.id, stored, 60_000)
    with pytest.raises(NotFound) as info:
        await load(gateway, KEY, "resp_old", "response_id")
    assert info.value.code == "storage_disabled" and "agent 'private'" in info.value.message
    gateway.config.responses = ResponsesSettings(store="never")
    with pytest.raises(NotFound, match=r"storage of responses is off \(responses.store: never"):
        await load(gateway, KEY, "resp_nope", "response_id")
