"""Background responses streamed, dropped, resumed and cancelled, through the openai SDK.

Against real gateways on loopback sharing the real Redis; the slow echo route
streams one word every 0.05 s. Every byte the SDK receives is checked after
each test (``responses_support.Clients``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import pytest
from redis import asyncio as aioredis

from tests.conftest import ECHO_CONFIG, RunningGateway, StartGateway
from tests.integration.responses_support import (
    Clients,
    Json,
    check_events,
    create_json,
)
from tests.integration.support import eventually, settled, usage_entries

TEXT = " ".join(f"word{n}" for n in range(12))
LONG = " ".join(f"word{n}" for n in range(60))  # 3 s at 0.05 s a word


def dump(events: list[Any]) -> list[Json]:
    return [e.model_dump(mode="json", exclude_unset=True) for e in events]


async def start_dropped(client: openai.AsyncOpenAI, text: str, keep: int) -> list[Json]:
    """Create a background streamed response; read ``keep`` events, then hang up."""
    stream = await client.responses.create(model="slow", input=text, background=True, stream=True)
    seen = []
    async for event in stream:
        seen.append(event)
        if len(seen) == keep:
            break
    await stream.close()
    return dump(seen)


async def resume(client: openai.AsyncOpenAI, response_id: str, after: int | None) -> list[Json]:
    if after is None:
        stream = await client.responses.retrieve(response_id, stream=True)
    else:
        stream = await client.responses.retrieve(response_id, stream=True, starting_after=after)
    return dump([event async for event in stream])


async def test_dropped_stream_resumes_with_exactly_the_rest(
    start_gateway: StartGateway, clients: Clients
) -> None:
    gw = await start_gateway()
    client = clients(gw, await gw.new_key())
    whole = dump(
        [e async for e in await client.responses.create(model="slow", input=TEXT, stream=True)]
    )

    first = await start_dropped(client, TEXT, keep=6)
    response_id = first[0]["response"]["id"]
    assert first[0]["response"]["background"] is True
    rest = await resume(client, response_id, first[-1]["sequence_number"])

    assert rest[0]["sequence_number"] == first[-1]["sequence_number"] + 1
    joined = check_events(first + rest)  # one whole, valid stream, numbered without gaps
    assert joined.text == TEXT
    assert [e["type"] for e in joined.events] == [e["type"] for e in whole]
    final = await client.responses.retrieve(response_id)
    assert final.status == "completed" and final.output_text == TEXT
    assert joined.final["output"][0]["content"] == whole[-1]["response"]["output"][0]["content"]
    # After the end: a resume from the last event is an empty stream; from the start, all.
    assert await resume(client, response_id, rest[-1]["sequence_number"]) == []
    assert await resume(client, response_id, None) == first + rest


async def test_resume_from_another_gateway_mid_run(
    start_gateway: StartGateway, clients: Clients
) -> None:
    one, two = await start_gateway(), await start_gateway()  # two apps, one Redis
    key = await one.new_key()
    first = await start_dropped(clients(one, key), LONG, keep=5)
    response_id = first[0]["response"]["id"]
    rest = await resume(clients(two, key), response_id, first[-1]["sequence_number"])
    joined = check_events(first + rest)
    assert joined.text == LONG and joined.final["status"] == "completed"


async def test_cancel_mid_run_stops_the_upstream_and_bills_what_was_produced(
    start_gateway: StartGateway, clients: Clients
) -> None:
    runner, other = await start_gateway(), await start_gateway()
    key = await runner.new_key(balance=1_000_000)
    key_id = (await runner.key_of(key)).id
    client, elsewhere = clients(runner, key), clients(other, key)
    first = await start_dropped(client, LONG, keep=8)
    response_id = first[0]["response"]["id"]
    follower = asyncio.create_task(resume(elsewhere, response_id, first[-1]["sequence_number"]))
    await asyncio.sleep(0.3)

    cancelled = await elsewhere.responses.cancel(response_id)  # from another process

    assert cancelled.status == "cancelled" and cancelled.background is True
    assert runner.gateway.active_calls == 0, "the upstream call is closed"
    produced = cancelled.output_text
    assert produced and LONG.startswith(produced) and produced != LONG
    assert cancelled.output[0].status == "incomplete"
    rest = await asyncio.wait_for(follower, 5)
    joined = check_events(first + rest)
    assert joined.types[-1] == "response.failed" and joined.final["status"] == "cancelled"
    assert joined.text == produced
    stored = await client.responses.retrieve(response_id)
    assert stored.status == "cancelled" and stored.output_text == produced
    # Cancelling again answers the same object (idempotent).
    again = await client.responses.cancel(response_id)
    assert again.status == "cancelled" and again.output_text == produced

    await settled(runner, key_id)
    [entry] = await usage_entries(runner, key_id)
    assert entry.usage is not None and cancelled.usage is not None
    words = len(produced.split())
    assert 0 < entry.usage.output_tokens < len(LONG.split())
    assert entry.usage.output_tokens >= words
    assert cancelled.usage.output_tokens == entry.usage.output_tokens
    ledger = await runner.store.ledger(key_id)
    assert sum(e.amount for e in ledger) == await runner.store.balance(key_id)
    assert entry.amount == -(entry.usage.input_tokens + 2 * entry.usage.output_tokens)


async def test_cancel_a_non_streamed_background_response(
    start_gateway: StartGateway, clients: Clients
) -> None:
    gw = await start_gateway()
    key = await gw.new_key()
    client = clients(gw, key)
    started = await client.responses.create(model="slow", input=LONG, background=True)
    await asyncio.sleep(0.3)
    cancelled = await client.responses.cancel(started.id)
    assert cancelled.status == "cancelled"
    assert gw.gateway.active_calls == 0
    await settled(gw, (await gw.key_of(key)).id)


async def test_cancel_after_the_end_answers_as_openai_does(
    start_gateway: StartGateway, clients: Clients
) -> None:
    gw = await start_gateway()
    client = clients(gw, await gw.new_key())
    started = await client.responses.create(model="echo", input="quick", background=True)

    async def done() -> Any:
        got = await client.responses.retrieve(started.id)
        return got if got.status == "completed" else None

    await eventually(done)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.cancel(started.id)
    assert caught.value.body == {  # type: ignore[comparison-overlap]
        "message": "Cannot cancel a completed response.",
        "type": "invalid_request_error",
        "param": "response_id",
        "code": None,
    }
    assert (await client.responses.retrieve(started.id)).status == "completed"
    plain = await client.responses.create(model="echo", input="not in the background")
    with pytest.raises(openai.BadRequestError, match="Cannot cancel a synchronous response"):
        await client.responses.cancel(plain.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.cancel("resp_0123456789abcdef0123456789abcdef")


async def test_another_key_sees_nothing(start_gateway: StartGateway, clients: Clients) -> None:
    gw = await start_gateway()
    owner = clients(gw, await gw.new_key())
    stranger = clients(gw, await gw.new_key())
    first = await start_dropped(owner, LONG, keep=4)
    response_id = first[0]["response"]["id"]
    with pytest.raises(openai.NotFoundError):
        await stranger.responses.retrieve(response_id)
    with pytest.raises(openai.NotFoundError):
        await stranger.responses.retrieve(response_id, stream=True, starting_after=1)
    with pytest.raises(openai.NotFoundError):
        await stranger.responses.cancel(response_id)
    assert (await owner.responses.retrieve(response_id)).status == "in_progress"
    assert (await owner.responses.cancel(response_id)).status == "cancelled"


async def test_the_event_buffer_is_bounded(
    start_gateway: StartGateway, clients: Clients, redis_client: aioredis.Redis
) -> None:
    gw = await start_gateway(ECHO_CONFIG + "responses: {events_max: 8}\n")
    client = clients(gw, await gw.new_key())
    first = await start_dropped(client, TEXT, keep=3)
    response_id = first[0]["response"]["id"]

    async def done() -> Any:
        got = await client.responses.retrieve(response_id)
        return got if got.status == "completed" else None

    await eventually(done)
    total = 2 + 2 + 12 + 3 + 1  # lifecycle, item and part added, deltas, done events, completed
    [name] = await redis_client.keys(f"*response:{response_id}:events")
    assert await redis_client.xlen(name) == 8
    assert 0 < await redis_client.ttl(name) <= 30 * 24 * 3600
    with pytest.raises(openai.BadRequestError) as caught:
        await resume(client, response_id, first[-1]["sequence_number"])
    body: Any = caught.value.body
    assert body["param"] == "starting_after" and body["code"] == "events_expired"
    assert f"the earliest kept is {total - 8}" in body["message"]
    tail = await resume(client, response_id, total - 9)
    assert [e["sequence_number"] for e in tail] == list(range(total - 8, total))
    assert tail[-1]["type"] == "response.completed"


async def test_the_buffer_bound_in_bytes(
    start_gateway: StartGateway, clients: Clients, redis_client: aioredis.Redis
) -> None:
    gw = await start_gateway(ECHO_CONFIG + "responses: {events_max_bytes: 4000}\n")
    client = clients(gw, await gw.new_key())
    # Slow enough for this follower to keep up: one that falls behind the buffer is cut off.
    started = await client.responses.create(model="slow", input=TEXT, background=True, stream=True)
    events = dump([e async for e in started])
    response_id = events[0]["response"]["id"]
    [name] = await redis_client.keys(f"*response:{response_id}:events")
    kept = await redis_client.xrange(name)
    assert sum(len(fields["e"]) for _, fields in kept) <= 4000
    assert 0 < len(kept) < len(events)
    assert kept[-1][1]["t"] == "response.completed"  # the newest always stays
    with pytest.raises(openai.BadRequestError, match="no longer buffered"):
        await resume(client, response_id, 0)


async def test_only_a_background_streamed_response_streams(
    start_gateway: StartGateway, clients: Clients, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway()
    key = await gw.new_key()
    client = clients(gw, key)
    plain = await client.responses.create(model="echo", input="hi")
    with pytest.raises(openai.BadRequestError) as caught:
        await resume(client, plain.id, None)
    assert caught.value.body["param"] == "stream"  # type: ignore[index]
    for query in ("stream=maybe", "stream=true&starting_after=-1", "starting_after=2"):
        async with http.get(
            f"{gw.url}/v1/responses/{plain.id}?{query}", headers={"Authorization": f"Bearer {key}"}
        ) as resp:
            assert resp.status == 400, query


async def test_cancel_finishes_a_run_whose_process_is_gone(
    start_gateway: StartGateway, clients: Clients, redis_client: aioredis.Redis
) -> None:
    gw = await start_gateway()
    client = clients(gw, await gw.new_key())
    first = await start_dropped(client, LONG, keep=4)
    response_id = first[0]["response"]["id"]
    [run] = await redis_client.keys(f"*response:{response_id}:run")
    await redis_client.delete(run)  # as if its process died and the lease ran out

    cancelled = await client.responses.cancel(response_id)

    assert cancelled.status == "cancelled"
    rest = await resume(client, response_id, first[-1]["sequence_number"])
    assert rest[-1]["type"] == "response.failed"
    assert rest[-1]["response"]["status"] == "cancelled"
    # The old runner finds it lost its run at its next write, and stops.
    await eventually(lambda: _idle(gw))
    assert (await client.responses.retrieve(response_id)).status == "cancelled"


async def _idle(gw: RunningGateway) -> bool:
    return gw.gateway.active_calls == 0


async def test_followers_per_process_are_capped(
    start_gateway: StartGateway, clients: Clients, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(ECHO_CONFIG + "responses: {max_followers: 1}\n")
    key = await gw.new_key()
    client = clients(gw, key)
    stream = await client.responses.create(model="slow", input=LONG, background=True, stream=True)
    response_id = ""
    async for event in stream:
        response_id = dump([event])[0]["response"]["id"]
        break
    async with http.get(
        f"{gw.url}/v1/responses/{response_id}?stream=true",
        headers={"Authorization": f"Bearer {key}"},
    ) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
    await stream.close()
    await eventually(lambda: _following(gw, 0))
    cancelled = await client.responses.cancel(response_id)
    assert cancelled.status == "cancelled"


async def _following(gw: RunningGateway, n: int) -> bool:
    return gw.gateway.response_runs._following == n


async def test_deleting_a_running_response_stops_it(
    start_gateway: StartGateway, clients: Clients, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway()
    key = await gw.new_key()
    client = clients(gw, key)
    first = await start_dropped(client, LONG, keep=4)
    response_id = first[0]["response"]["id"]
    await client.responses.delete(response_id)
    await eventually(lambda: _idle(gw))
    body = await create_json(http, gw, key, {"model": "echo", "input": "still works"})
    assert body["status"] == "completed"
    with pytest.raises(openai.NotFoundError):
        await resume(client, response_id, 0)
