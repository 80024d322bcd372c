"""What the gateway keeps of Open Responses conversations, through the official openai SDK
and real Redis: ``store: never`` per route or for all, a route's shorter retention, a
live reload of the policy, and encryption at rest (stored responses and the event
streams of background responses)."""

from __future__ import annotations

import base64
import dataclasses
import os
from typing import Any

import openai
import pytest
from redis import asyncio as aioredis

from gateway.store.policy import StoragePolicy
from tests.conftest import ECHO_CONFIG, StartGateway, make_config
from tests.integration.responses_support import Clients, check_events

SECRET_TEXT = "quarterly salary review of Alice Martin"
CONFIG = (
    ECHO_CONFIG
    + """\
  private:
    backend: echo
    store: never
  brief:
    backend: slow
    retention_seconds: 120
"""
)


async def _stored_keys(redis: aioredis.Redis) -> list[str]:
    return [k for k in await redis.keys("gw:*:response*") if not k.endswith(":responses")]


async def test_never_serves_store_true_as_store_false_and_keeps_nothing(
    start_gateway: StartGateway, clients: Clients, redis_client: aioredis.Redis
) -> None:
    gw = await start_gateway(CONFIG)
    client = clients(gw, await gw.new_key())
    answer = await client.responses.create(model="private", input=SECRET_TEXT, store=True)
    assert answer.store is False and answer.output_text == SECRET_TEXT
    streamed = [
        e
        async for e in await client.responses.create(
            model="private", input=SECRET_TEXT, stream=True
        )
    ]
    final = streamed[-1].model_dump(mode="json")["response"]
    assert final["store"] is False
    await gw.gateway.tasks.drain()
    assert await _stored_keys(redis_client) == []

    with pytest.raises(openai.NotFoundError) as absent:
        await client.responses.retrieve(answer.id)
    assert "not found" in absent.value.message

    refused: list[tuple[dict[str, Any], str]] = [
        ({"previous_response_id": answer.id}, "previous_response_id"),
        ({"background": True}, "background"),
    ]
    for extra, param in refused:
        with pytest.raises(openai.BadRequestError) as bad:
            await client.responses.create(model="private", input="x", **extra)
        error = bad.value.body
        assert isinstance(error, dict)
        assert (error["param"], error["code"]) == (param, "storage_disabled")
        assert "Storage is off for agent 'private'" in error["message"]
    assert (await gw.store.ledger((await gw.key_of(client.api_key)).id))[-1].agent == "private"


async def test_a_policy_turned_off_hides_what_was_stored_and_a_route_shortens_retention(
    start_gateway: StartGateway, clients: Clients, redis_client: aioredis.Redis
) -> None:
    gw = await start_gateway(CONFIG)
    client = clients(gw, await gw.new_key())
    kept = await client.responses.create(model="echo", input="hello")
    assert kept.store is True
    brief = await client.responses.create(model="brief", input="hello")
    await gw.gateway.tasks.drain()
    [name] = [k for k in await _stored_keys(redis_client) if brief.id in k]
    assert 100 < await redis_client.ttl(name) <= 120
    [long] = [k for k in await _stored_keys(redis_client) if kept.id in k]
    assert await redis_client.ttl(long) > 86400

    # A reload that says store: never for every agent applies to the next request.
    gw.gateway.reload(make_config("responses: {store: never}\n" + ECHO_CONFIG))
    with pytest.raises(openai.NotFoundError) as absent:
        await client.responses.retrieve(kept.id)
    assert isinstance(absent.value.body, dict)
    assert absent.value.body["code"] == "storage_disabled"
    with pytest.raises(openai.BadRequestError):
        await client.responses.create(model="echo", input="x", previous_response_id=kept.id)
    answer = await client.responses.create(model="echo", input="hi")
    assert answer.store is False


KEY = base64.b64encode(os.urandom(32)).decode()
OLD = base64.b64encode(os.urandom(32)).decode()


async def test_encrypted_at_rest_chains_resumes_and_rotates(
    start_gateway: StartGateway,
    clients: Clients,
    redis_client: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GW_TEST_OLD_KEY", OLD)
    monkeypatch.setenv("GW_TEST_KEY", KEY)
    old = await start_gateway("responses: {encryption: {key_env: GW_TEST_OLD_KEY}}\n" + CONFIG)
    secret = await old.new_key()
    first = await clients(old, secret).responses.create(model="echo", input=SECRET_TEXT)

    rotated = (
        "responses:\n  encryption: {key_env: GW_TEST_KEY, previous_key_envs: [GW_TEST_OLD_KEY]}\n"
    )
    gw = await start_gateway(rotated + CONFIG)
    client = clients(gw, secret)
    second = await client.responses.create(
        model="echo", input="and then", previous_response_id=first.id
    )
    items = await client.responses.input_items.list(second.id, order="asc")
    assert [i.content[0].text for i in items.data] == [SECRET_TEXT, SECRET_TEXT, "and then"]

    background = await client.responses.create(
        model="slow", input=SECRET_TEXT, background=True, stream=True
    )
    events = [e.model_dump(mode="json", exclude_unset=True) async for e in background]
    assert check_events(events).text == SECRET_TEXT
    response_id = events[0]["response"]["id"]
    resumed = await client.responses.retrieve(response_id, stream=True, starting_after=2)
    again = [e.model_dump(mode="json", exclude_unset=True) async for e in resumed]
    assert again == events[3:]

    await gw.gateway.tasks.drain()
    for name in await _stored_keys(redis_client):
        if await redis_client.type(name) == "stream":
            values = [f["e"] for _, f in await redis_client.xrange(name)]
        elif await redis_client.type(name) == "string":
            values = [await redis_client.get(name)]
        else:
            continue
        for value in values:
            assert value.startswith("gwe1:") and "Alice" not in value, name

    # Without the old key, what it sealed is an error, never garbage or plain text.
    only_new = await start_gateway("responses: {encryption: {key_env: GW_TEST_KEY}}\n" + CONFIG)
    with pytest.raises(openai.InternalServerError) as unreadable:
        await clients(only_new, secret).responses.retrieve(first.id)
    assert isinstance(unreadable.value.body, dict)
    assert unreadable.value.body["code"] == "stored_content_unreadable"
    assert (await clients(only_new, secret).responses.retrieve(second.id)).id == second.id


async def test_background_refused_after_a_reload_turned_storage_off_mid_request(
    start_gateway: StartGateway, clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storage turned off between the context check and the answer: still a 400, and the
    call already opened is closed (nothing held, nothing run in the background)."""
    gw = await start_gateway(CONFIG)
    client = clients(gw, await gw.new_key())
    real = gw.gateway.storage
    seen: list[str] = []

    def flipped(agent: str) -> StoragePolicy:
        seen.append(agent)
        policy = real(agent)
        return policy if len(seen) == 1 else dataclasses.replace(policy, allowed=False)

    monkeypatch.setattr(gw.gateway, "storage", flipped)
    with pytest.raises(openai.BadRequestError) as bad:
        await client.responses.create(model="echo", input="x", background=True)
    assert isinstance(bad.value.body, dict) and bad.value.body["param"] == "background"
    assert len(seen) == 2
    await gw.gateway.tasks.drain()
    assert gw.gateway.active_calls == 0
    key_id = (await gw.key_of(client.api_key)).id
    assert await gw.store.held(key_id) == 0
