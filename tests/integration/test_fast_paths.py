"""The stream's fast paths change how much work the gateway does, never what it
answers or charges.

The events of one upstream read go through the gateway as one batch, and a text
chunk shaped like the last one is read without parsing its JSON. Against an
upstream whose stream comes a frame per read, every chunk parsed, the client gets
the same bytes and the ledger the same entry.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import aiohttp
import pytest
from gateway_plugins.backends import openai_wire

from tests.conftest import RunningGateway, StartGateway
from tests.fakes.openai_upstream import FakeOpenAIUpstream, Script, ToolCallScript
from tests.integration.support import upstream_config, usage_entries

WORDS = tuple(f" word{i}" for i in range(40))
# The generated parts of an answer: ids, times (and, in the Responses dialect, the
# ids of its items), which differ from one request to the next.
GENERATED = re.compile(
    rb'"(id|item_id|response_id)":"[^"]*"|"(created|created_at|completed_at)":[0-9.]+'
)

SCENARIOS: dict[str, tuple[Script, dict[str, Any]]] = {
    "an answer with usage": (Script(content=WORDS), {}),
    "no usage reported: estimated": (Script(content=WORDS, usage=None), {}),
    "the output cap reached mid-read": (Script(content=WORDS), {"max_tokens": 16}),
    "an upstream error after content": (Script(content=WORDS, error_after=25), {}),
    "tool calls": (
        Script(content=WORDS[:3], tool_calls=(ToolCallScript("f", ('{"a"', ":1}")),)),
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
    ),
}


async def answer(
    gw: RunningGateway, key: str, path: str, body: dict[str, Any]
) -> tuple[bytes, int]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(gw.url + path, json=body, headers={"Authorization": f"Bearer {key}"}) as r,
    ):
        return GENERATED.sub(b"<generated>", await r.read()), r.status


@pytest.mark.parametrize("dialect", ["chat", "responses"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_the_fast_paths_give_the_same_bytes_and_ledger_as_the_full_one(
    start_gateway: StartGateway,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
    monkeypatch: pytest.MonkeyPatch,
    scenario: str,
    dialect: str,
) -> None:
    """Batches of a read and text chunks read by their shape (``feed_data``) against
    a read per frame and every chunk parsed."""
    script, extra = SCENARIOS[scenario]
    if dialect == "chat":
        path = "/v1/chat/completions"
        body = {"model": "up", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        body |= {"stream_options": {"include_usage": True}} | extra
    else:
        path = "/v1/responses"
        body = {"model": "up", "stream": True, "input": "hi", "store": False}
        if "max_tokens" in extra:
            body["max_output_tokens"] = extra["max_tokens"]
        if "tools" in extra:
            body["tools"] = [{"type": "function", "name": "f", "parameters": {}}]
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    results = []
    for one_write, shapes in ((True, True), (False, False)):
        monkeypatch.setattr(openai_wire, "SHAPE_TRIES", openai_wire.SHAPE_TRIES if shapes else 0)
        record, key = await gw.new_key_record()
        fake_upstream.script = dataclasses.replace(
            script, one_write=one_write, chunk_delay=0 if one_write else 0.003
        )
        raw, status = await answer(gw, key, path, body)
        (entry,) = await usage_entries(gw, record.id)
        results.append((status, raw, entry.amount, entry.usage, entry.held))
    assert results[0] == results[1]
    status, raw, amount, usage, _ = results[0]
    assert status == 200 and amount < 0 and usage is not None
    assert raw.count(b"word") >= 3
