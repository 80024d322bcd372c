"""Open Responses through the official openai SDK, against the echo backend and real Redis.

Every byte the SDK receives from ``/responses`` is validated after each test
(``responses_support.Clients``): response objects against ``ResponseResource``,
streams against the framing rules and every event against its model.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import ECHO_CONFIG, StartGateway
from tests.integration.conftest import MakeClient
from tests.integration.responses_support import (
    Clients,
    check_response,
    create_json,
    create_stream,
    get_json,
)
from tests.integration.support import eventually

WEATHER_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string", "minLength": 2}},
        "required": ["location"],
        "additionalProperties": False,
    },
}
TIME_TOOL: Any = {
    "type": "function",
    "name": "get_time",
    "description": "The time in a city",
    "parameters": {
        "type": "object",
        "properties": {"zone": {"type": "string"}},
        "required": ["zone"],
    },
}


@pytest.mark.parametrize("prefix", ["/v1", "/api/agents/v1"])
async def test_create(start_gateway: StartGateway, clients: Clients, prefix: str) -> None:
    gw = await start_gateway()
    client = clients(gw, await gw.new_key(), prefix)
    response = await client.responses.create(model="echo", input="the quick brown fox")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == "echo"
    assert response.output_text == "the quick brown fox"
    [item] = response.output
    assert item.type == "message"
    assert item.id and item.status == "completed" and item.role == "assistant"
    assert response.usage is not None
    assert response.usage.output_tokens == 4  # one per word
    assert response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + 4
    assert response.store is True and response.background is False
    assert response.tool_choice == "auto" and response.tools == []
    assert response.previous_response_id is None
    assert response.metadata == {}
    check_response(response.to_dict())
    assert (await client.responses.retrieve(response.id)).output_text == "the quick brown fox"
    assert clients.check() == 2


async def test_create_echoes_request_fields(start_gateway: StartGateway, clients: Clients) -> None:
    # service_tier "flex" changes the upstream's price: this route must allow it.
    allowing = ECHO_CONFIG.replace(
        "    max_output_tokens: 200\n  free:",
        "    max_output_tokens: 200\n    allow_price_fields: [service_tier]\n  free:",
    )
    gw = await start_gateway(allowing)
    client = clients(gw, await gw.new_key())
    response = await client.responses.create(
        model="echo",
        input=[{"type": "message", "role": "user", "content": "hi"}],
        instructions="Be brief.",
        metadata={"trace": "t-1", "team": "blue"},
        temperature=0.5,
        top_p=0.9,
        max_output_tokens=64,
        parallel_tool_calls=False,
        tools=[WEATHER_TOOL],
        tool_choice="none",
        truncation="auto",
        reasoning={"effort": "low"},
        text={"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}}},
        safety_identifier="user-7",
        prompt_cache_key="cache-1",
        service_tier="flex",
    )
    assert response.output_text == "hi"  # tool_choice none: no call
    assert response.instructions == "Be brief."
    assert response.metadata == {"trace": "t-1", "team": "blue"}
    assert (response.temperature, response.top_p) == (0.5, 0.9)
    assert response.max_output_tokens == 64
    assert response.parallel_tool_calls is False
    assert response.tool_choice == "none"
    assert [t.name for t in response.tools] == ["get_weather"]  # type: ignore[union-attr]
    assert response.truncation == "auto"
    assert response.reasoning is not None and response.reasoning.effort == "low"
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"
    assert response.safety_identifier == "user-7"
    assert response.prompt_cache_key == "cache-1"
    assert response.service_tier == "flex"


async def test_create_stream(start_gateway: StartGateway, clients: Clients) -> None:
    gw = await start_gateway()
    client = clients(gw, await gw.new_key())
    stream = await client.responses.create(model="echo", input="one two three", stream=True)
    events = [event async for event in stream]
    types = [e.type for e in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.output_text == "one two three"
    assert final.response.usage is not None and final.response.usage.output_tokens == 3
    assert clients.check() == 1


async def test_stream_helper_final_response(start_gateway: StartGateway, clients: Clients) -> None:
    gw = await start_gateway()
    client = clients(gw, await gw.new_key())
    deltas = []
    async with client.responses.stream(model="echo", input="alpha beta gamma delta") as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = await stream.get_final_response()
    assert "".join(deltas) == "alpha beta gamma delta"
    assert final.status == "completed"
    assert final.output_text == "alpha beta gamma delta"
    # The stored response is the one the stream ended with.
    stored = await client.responses.retrieve(final.id)
    assert stored.status == "completed"
    assert [(i.id, i.status) for i in stored.output] == [(i.id, i.status) for i in final.output]
    assert stored.output_text == final.output_text


async def test_stream_helper_function_call(start_gateway: StartGateway, clients: Clients) -> None:
    gw = await start_gateway()
    client = clients(gw, await gw.new_key())
    async with client.responses.stream(
        model="echo", input="weather?", tools=[WEATHER_TOOL], tool_choice="required"
    ) as stream:
        final = await stream.get_final_response()
    [call] = final.output
    assert call.type == "function_call"
    assert call.name == "get_weather"
    assert call.call_id.startswith("call_")
    assert call.status == "completed"
    assert set(json.loads(call.arguments)) == {"location"}


async def test_function_call_round_trip(start_gateway: StartGateway, clients: Clients) -> None:
    gw = await start_gateway()
    client = clients(gw, await gw.new_key())
    first = await client.responses.create(
        model="echo",
        input="Use the weather tool to get the temperature in San Francisco.",
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice={"type": "function", "name": "get_time"},
    )
    assert first.tool_choice.to_dict() == {"type": "function", "name": "get_time"}  # type: ignore[union-attr]
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_time"  # the forced one, not the first
    assert call.call_id and call.id and call.id != call.call_id
    assert json.loads(call.arguments) == {"zone": "echo"}
    assert first.status == "completed"

    second = await client.responses.create(
        model="echo",
        previous_response_id=first.id,
        input=[
            {"type": "function_call_output", "call_id": call.call_id, "output": "64F and clear"}
        ],
    )
    assert second.status == "completed"
    assert second.previous_response_id == first.id
    assert second.output_text == "The tool returned: 64F and clear"
    assert second.tools == []  # tools are not carried over


async def test_function_call_round_trip_streamed(
    start_gateway: StartGateway, clients: Clients
) -> None:
    gw = await start_gateway()
    client = clients(gw, await gw.new_key())
    stream = await client.responses.create(
        model="echo",
        input="weather?",
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        stream=True,
    )
    events = [e async for e in stream]
    types = [e.type for e in events]
    assert types[2] == "response.output_item.added"
    assert types.count("response.function_call_arguments.delta") >= 1
    assert "response.content_part.added" not in types  # no parts for a function call
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    final = events[-1]
    assert final.type == "response.completed"
    [call] = final.response.output
    assert call.type == "function_call"
    assert call.arguments == done.arguments  # type: ignore[attr-defined]
    second = await client.responses.create(
        model="echo",
        previous_response_id=final.response.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        stream=True,
    )
    answer = [e async for e in second]
    assert answer[-1].type == "response.completed"
    assert answer[-1].response.output_text == "The tool returned: sunny"


async def test_chain_of_four(start_gateway: StartGateway, clients: Clients) -> None:
    gw = await start_gateway()
    client = clients(gw, await gw.new_key())
    previous = None
    for n, word in enumerate(["papaya", "mango", "kiwi", "lime"]):
        response = await client.responses.create(
            model="echo",
            input=f"word {word}",
            **({"previous_response_id": previous} if previous else {}),
        )
        assert response.output_text == f"word {word}"
        assert response.previous_response_id == previous
        previous = response.id
        # The context grows by one input and one output per turn.
        items = await client.responses.input_items.list(response.id, order="asc")
        assert len(items.data) == 2 * n + 1
    texts = []
    for item in items.data:
        assert item.type == "message"
        texts.append((item.role, item.content[0].text))  # type: ignore[union-attr]
    assert texts == [
        ("user", "word papaya"),
        ("assistant", "word papaya"),
        ("user", "word mango"),
        ("assistant", "word mango"),
        ("user", "word kiwi"),
        ("assistant", "word kiwi"),
        ("user", "word lime"),
    ]


async def test_retrieve_and_delete(start_gateway: StartGateway, clients: Clients) -> None:
    gw = await start_gateway()
    client = clients(gw, await gw.new_key())
    created = await client.responses.create(model="echo", input="keep me", metadata={"a": "b"})
    got = await client.responses.retrieve(created.id)
    assert got.to_dict() == created.to_dict()
    await client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.responses.retrieve(created.id)
    assert caught.value.status_code == 404
    with pytest.raises(openai.NotFoundError):
        await client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError) as chained:
        await client.responses.create(model="echo", input="more", previous_response_id=created.id)
    assert chained.value.body["param"] == "previous_response_id"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        await client.responses.input_items.list(created.id)


async def test_delete_body(
    start_gateway: StartGateway, clients: Clients, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway()
    key = await gw.new_key()
    created = await create_json(http, gw, key, {"model": "echo", "input": "x"})
    status, body = await get_json(http, gw, key, f"responses/{created['id']}", "DELETE")
    assert (status, body) == (
        200,
        {"id": created["id"], "object": "response.deleted", "deleted": True},
    )
    status, body = await get_json(http, gw, key, f"responses/{created['id']}")
    assert status == 404
    assert body["error"]["type"] == "not_found_error"
    assert body["error"]["param"] == "response_id"


async def test_other_key_gets_404(start_gateway: StartGateway, clients: Clients) -> None:
    gw = await start_gateway()
    owner = clients(gw, await gw.new_key())
    stranger = clients(gw, await gw.new_key())
    created = await owner.responses.create(model="echo", input="mine")
    with pytest.raises(openai.NotFoundError):
        await stranger.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        await stranger.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        await stranger.responses.input_items.list(created.id)
    with pytest.raises(openai.NotFoundError) as caught:
        await stranger.responses.create(
            model="echo", input="steal", previous_response_id=created.id
        )
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]
    out_id = created.output[0].id
    with pytest.raises(openai.NotFoundError):
        await stranger.responses.create(
            model="echo", input=[{"type": "item_reference", "id": out_id}]
        )
    # Still there for its owner.
    assert (await owner.responses.retrieve(created.id)).id == created.id


async def test_store_false(start_gateway: StartGateway, clients: Clients) -> None:
    gw = await start_gateway()
    client = clients(gw, await gw.new_key())
    response = await client.responses.create(model="echo", input="forget me", store=False)
    assert response.store is False
    assert response.output_text == "forget me"
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.responses.create(model="echo", input="again", previous_response_id=response.id)
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]
    stream = await client.responses.create(model="echo", input="streamed", store=False, stream=True)
    final = [e async for e in stream][-1]
    assert final.type == "response.completed"
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(final.response.id)


async def test_unknown_previous_response(start_gateway: StartGateway, clients: Clients) -> None:
    gw = await start_gateway()
    client = clients(gw, await gw.new_key())
    with pytest.raises(openai.NotFoundError) as caught:
        await client.responses.create(
            model="echo", input="x", previous_response_id="resp_doesnotexist", stream=True
        )
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]


async def test_input_items(start_gateway: StartGateway, clients: Clients) -> None:
    gw = await start_gateway()
    client = clients(gw, await gw.new_key())
    inputs: Any = [
        {"role": "system", "content": "sys"},  # no type: a message
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "u1"}]},
        {"type": "message", "role": "assistant", "content": "a1"},
        {"type": "message", "role": "user", "content": "u2"},
    ]
    response = await client.responses.create(model="echo", input=inputs)
    assert response.output_text == "u2"
    page = await client.responses.input_items.list(response.id)  # newest first by default
    assert [i.role for i in page.data] == ["user", "assistant", "user", "system"]  # type: ignore[union-attr]
    assert page.has_more is False
    ids = [i.id for i in page.data]
    assert len(set(ids)) == 4
    asc = await client.responses.input_items.list(response.id, order="asc", limit=2)
    assert [i.id for i in asc.data] == ids[::-1][:2]
    assert asc.has_more is True
    rest = await client.responses.input_items.list(response.id, order="asc", after=asc.data[-1].id)
    assert [i.id for i in rest.data] == ids[::-1][2:]
    every = [i.id async for i in client.responses.input_items.list(response.id, limit=1)]
    assert every == ids  # the SDK's pager follows has_more / after


async def test_item_reference(start_gateway: StartGateway, clients: Clients) -> None:
    gw = await start_gateway()
    client = clients(gw, await gw.new_key())
    first = await client.responses.create(model="echo", input="remember the ocelot")
    [user_item] = (await client.responses.input_items.list(first.id)).data
    # A reference to an earlier input item (echo repeats the last user message) ...
    second = await client.responses.create(
        model="echo",
        input=[
            {"type": "message", "role": "user", "content": "something else"},
            {"type": "item_reference", "id": user_item.id},
        ],
    )
    assert second.output_text == "remember the ocelot"
    # ... and to an earlier output item, with and without its type.
    out_id = first.output[0].id
    third = await client.responses.create(
        model="echo",
        input=[{"type": "item_reference", "id": out_id}, {"role": "user", "content": "now"}],
    )
    assert third.output_text == "now"
    items = await client.responses.input_items.list(third.id, order="asc")
    assert [(i.role, i.content[0].text) for i in items.data] == [  # type: ignore[union-attr]
        ("assistant", "remember the ocelot"),
        ("user", "now"),
    ]
    with pytest.raises(openai.NotFoundError) as caught:
        await client.responses.create(
            model="echo", input=[{"type": "item_reference", "id": "msg_nothing_0"}]
        )
    assert caught.value.body["param"] == "input[0]"  # type: ignore[index]


async def test_concurrent_streams(start_gateway: StartGateway, clients: Clients) -> None:
    gw = await start_gateway()
    client = clients(gw, await gw.new_key())
    n = 24

    async def one(i: int) -> tuple[str, str, set[str], set[str]]:
        text = f"stream {i} says {'x' * (i % 5)}alpha{i} beta{i} gamma{i}"
        stream = await client.responses.create(model="slow", input=text, stream=True)
        deltas: list[str] = []
        response_ids: set[str] = set()
        item_ids: set[str] = set()
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
                item_ids.add(event.item_id)
            elif event.type in ("response.created", "response.in_progress", "response.completed"):
                response_ids.add(event.response.id)
            if event.type == "response.completed":
                assert event.response.output_text == text
                item_ids.add(event.response.output[0].id)
        assert "".join(deltas) == text
        return text, "".join(deltas), response_ids, item_ids

    results = await asyncio.gather(*(one(i) for i in range(n)))
    all_ids: set[str] = set()
    all_items: set[str] = set()
    for text, got, response_ids, item_ids in results:
        assert got == text
        assert len(response_ids) == 1 and len(item_ids) == 1
        all_ids |= response_ids
        all_items |= item_ids
    assert len(all_ids) == n and len(all_items) == n
    assert clients.check() == n


async def test_background(
    start_gateway: StartGateway, clients: Clients, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway()
    key = await gw.new_key()
    client = clients(gw, key)
    text = "one two three four five six seven eight"
    started = await client.responses.create(model="slow", input=text, background=True)
    assert started.background is True
    assert started.status in ("queued", "in_progress")
    assert started.completed_at is None and started.output == []

    async def done() -> Any:
        got = await client.responses.retrieve(started.id)
        return got if got.status == "completed" else None

    finished = await eventually(done, within=5.0)
    assert finished.output_text == text
    assert finished.background is True and finished.completed_at is not None
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="echo", input="x", background=True, store=False)
    assert caught.value.body["param"] == "store"  # type: ignore[index]
    # background with stream streams (test_responses_background.py has the rest)
    status, content_type, _ = await _post(
        http, gw.url, key, {"model": "echo", "input": "x", "background": True, "stream": True}
    )
    assert status == 200 and content_type.startswith("text/event-stream")


async def _post(
    http: aiohttp.ClientSession, url: str, key: str, body: dict[str, Any]
) -> tuple[int, str, bytes]:
    async with http.post(
        f"{url}/v1/responses", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def test_raw_stream_framing(start_gateway: StartGateway, http: aiohttp.ClientSession) -> None:
    gw = await start_gateway()
    key = await gw.new_key()
    stream = await create_stream(http, gw, key, {"model": "echo", "input": "framed and checked"})
    assert stream.text == "framed and checked"
    assert stream.final["output"][0]["content"][0]["text"] == "framed and checked"
    item_ids = {e["item_id"] for e in stream.events if "item_id" in e}
    assert item_ids == {stream.final["output"][0]["id"]}


async def test_deleted_background_response_stays_deleted(
    start_gateway: StartGateway, clients: Clients
) -> None:
    gw = await start_gateway()
    client = clients(gw, await gw.new_key())
    started = await client.responses.create(
        model="slow", input="one two three four five", background=True
    )
    await client.responses.delete(started.id)
    await asyncio.sleep(0.5)  # the run ends (5 words at 0.05 s) after the delete
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(started.id)


REASONING_CONFIG = """
responses: {reasoning_events: %s}
backends:
  thinker: {type: echo, reasoning: true}
routes:
  thinker: {backend: thinker}
  raw-thinker:
    backend: thinker
    responses: {reasoning_events: openai}
"""


async def test_stream_helper_sees_reasoning_as_a_summary_by_default(
    start_gateway: StartGateway, clients: Clients
) -> None:
    # Summary events are the ones the spec, OpenAI's stream helpers and the
    # Vercel AI SDK all know; ``clients`` checks every event against the spec.
    gw = await start_gateway(REASONING_CONFIG.replace("responses: {reasoning_events: %s}", ""))
    client = clients(gw, await gw.new_key())
    deltas: list[str] = []
    async with client.responses.stream(model="thinker", input="hi there") as stream:
        async for event in stream:
            assert event.type not in ("response.reasoning.delta", "response.reasoning_text.delta")
            if event.type == "response.reasoning_summary_text.delta":
                assert isinstance(
                    event, openai.types.responses.ResponseReasoningSummaryTextDeltaEvent
                )
                deltas.append(event.delta)
        final = await stream.get_final_response()
    reasoning, message = final.output
    assert reasoning.type == "reasoning" and message.type == "message"
    [summary] = reasoning.summary
    assert summary.type == "summary_text" and summary.text == "".join(deltas)
    assert summary.text.startswith("The user wants")
    assert final.output_text == "hi there"
    assert clients.check() == 1


async def test_stream_helper_sees_openai_reasoning_text_when_the_route_asks(
    start_gateway: StartGateway, sdk: MakeClient
) -> None:
    gw = await start_gateway(REASONING_CONFIG % "spec")  # the route overrides the default
    client = sdk(gw, await gw.new_key())
    deltas: list[str] = []
    async with client.responses.stream(model="raw-thinker", input="hi there") as stream:
        async for event in stream:
            if event.type == "response.reasoning_text.delta":
                assert isinstance(event, openai.types.responses.ResponseReasoningTextDeltaEvent)
                deltas.append(event.delta)
            elif event.type == "response.reasoning_text.done":
                assert event.text == "".join(deltas)
        final = await stream.get_final_response()
    reasoning = final.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary == []
    assert reasoning.content is not None
    assert [c.text for c in reasoning.content] == ["".join(deltas)]
    assert deltas and final.output_text == "hi there"


async def test_spec_reasoning_events_from_the_top_level_setting(
    start_gateway: StartGateway, clients: Clients
) -> None:
    gw = await start_gateway(REASONING_CONFIG % "spec")
    client = clients(gw, await gw.new_key())
    stream = await client.responses.create(model="thinker", input="hi", stream=True)
    types = [event.type async for event in stream]
    assert "response.reasoning.delta" in types and "response.reasoning.done" in types
    assert not [t for t in types if "summary" in t or "reasoning_text" in t]
    response = await client.responses.create(model="thinker", input="hi")
    reasoning = response.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary == []
    assert reasoning.content and reasoning.content[0].text.startswith("The user wants")
    assert clients.check() == 2
