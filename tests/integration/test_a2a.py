"""The /a2a door end to end, driven by the official A2A SDK's client (``a2a-sdk``).

Over the echo backend and over a Chat-Completions-only upstream: the card, send,
stream, get, list, cancel, resubscribe after a dropped stream, a multi-turn
context; the bill (the task's metadata, the ledger, the balance); auth.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from a2a.client.errors import AgentCardResolutionError
from a2a.types import a2a_pb2 as a2a
from a2a.utils.errors import (
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from google.protobuf.json_format import MessageToDict

from gateway.store.a2a_tasks import StoredTask
from tests.conftest import StartGateway
from tests.fakes.openai_upstream import FakeOpenAIUpstream, Script, ToolCallScript
from tests.integration.a2a_support import MakeA2A, collect, message, text_of
from tests.integration.support import settled, upstream_config, usage_entries

CONFIG = """
backends:
  echo: {type: echo}
  slow: {type: echo, chunk_delay: 0.05}
routes:
  echo:
    backend: echo
    pricing: {input: 1, output: 2}
    a2a:
      description: Repeats what you say.
      skills: [{id: repeat, name: Repeat, description: Says it back, tags: [echo]}]
  slow:
    backend: slow
    pricing: {input: 1, output: 2}
  other:
    backend: echo
"""


async def test_the_card_describes_the_route_and_how_to_call_it(
    start_gateway: StartGateway, a2a_client: MakeA2A, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(CONFIG)
    key = await gw.new_key()
    async with http.get(f"{gw.url}/a2a/echo/.well-known/agent-card.json") as r:
        assert r.status == 200
        card = await r.json()
    assert card["name"] == "echo" and card["description"] == "Repeats what you say."
    assert card["supportedInterfaces"] == [
        {"url": f"{gw.url}/a2a/echo", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
    ]
    assert card["capabilities"]["streaming"] is True
    assert card["skills"][0]["id"] == "repeat"
    scheme = card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]
    assert scheme["scheme"] == "Bearer"
    assert "sk-" not in str(card)  # nothing secret: no key, no upstream, no price
    client = await a2a_client(gw, key)  # the SDK's own resolver and client factory
    events = await collect(client.send_message(message("hello there")))
    assert events[0].task.status.state == a2a.TASK_STATE_SUBMITTED
    assert events[-1].status_update.status.state == a2a.TASK_STATE_COMPLETED


async def test_a_streamed_task_sends_its_text_as_it_comes_and_ends_completed(
    start_gateway: StartGateway, a2a_client: MakeA2A
) -> None:
    gw = await start_gateway(CONFIG)
    key = await gw.new_key()
    client = await a2a_client(gw, key)
    events = await collect(client.send_message(message("one two three four")))
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[0] == "task" and kinds[1] == "status_update" and kinds[-1] == "status_update"
    assert events[1].status_update.status.state == a2a.TASK_STATE_WORKING
    chunks = [e.artifact_update for e in events if e.HasField("artifact_update")]
    assert len(chunks) == 4  # one per word, as the echo agent streams them
    assert "".join(p.text for c in chunks for p in c.artifact.parts) == "one two three four"
    assert [c.append for c in chunks] == [False, True, True, True]
    assert len({c.artifact.artifact_id for c in chunks}) == 1
    final = events[-1].status_update
    task_id = events[0].task.id
    assert final.task_id == task_id and final.context_id == events[0].task.context_id
    assert final.status.state == a2a.TASK_STATE_COMPLETED
    stored = await client.get_task(a2a.GetTaskRequest(id=task_id))
    assert stored.status.state == a2a.TASK_STATE_COMPLETED
    assert text_of(stored) == "one two three four"


async def test_send_get_and_list_over_the_echo_backend(
    start_gateway: StartGateway, a2a_client: MakeA2A
) -> None:
    gw = await start_gateway(CONFIG)
    key = await gw.new_key()
    client = await a2a_client(gw, key, streaming=False)
    [event] = await collect(client.send_message(message("hello there agent")))
    task = event.task
    assert task.status.state == a2a.TASK_STATE_COMPLETED
    assert text_of(task) == "hello there agent"
    assert [m.role for m in task.history] == [a2a.ROLE_USER, a2a.ROLE_AGENT]
    got = await client.get_task(a2a.GetTaskRequest(id=task.id))
    assert MessageToDict(got) == MessageToDict(task)
    short = await client.get_task(a2a.GetTaskRequest(id=task.id, history_length=1))
    assert [m.role for m in short.history] == [a2a.ROLE_AGENT]
    listed = await client.list_tasks(a2a.ListTasksRequest())
    assert [t.id for t in listed.tasks] == [task.id] and listed.total_size == 1
    with pytest.raises(TaskNotFoundError):
        await client.get_task(a2a.GetTaskRequest(id="task-nope"))


LONG = " ".join(f"w{i}" for i in range(60))  # 60 chunks, 50 ms apart on the slow route


async def test_a_task_is_cancelled_while_it_streams_and_billed_for_what_it_produced(
    start_gateway: StartGateway, a2a_client: MakeA2A
) -> None:
    gw = await start_gateway(CONFIG)
    key = await gw.new_key()
    client = await a2a_client(gw, key, "slow")
    events = []
    async for event in client.send_message(message(LONG)):
        events.append(event)
        if len(events) == 3:  # the task, working, a first chunk
            canceled = await client.cancel_task(a2a.CancelTaskRequest(id=events[0].task.id))
            assert canceled.status.state == a2a.TASK_STATE_CANCELED
    assert events[-1].status_update.status.state == a2a.TASK_STATE_CANCELED
    text = "".join(p.text for e in events for p in e.artifact_update.artifact.parts)
    assert 0 < len(text) < len(LONG)
    task = await client.get_task(a2a.GetTaskRequest(id=events[0].task.id))
    assert task.status.state == a2a.TASK_STATE_CANCELED
    assert task.metadata["cost"]["credits"] > 0
    with pytest.raises(TaskNotCancelableError):
        await client.cancel_task(a2a.CancelTaskRequest(id=task.id))
    key_id = (await gw.key_of(key)).id
    [entry] = await usage_entries(gw, key_id)
    assert -entry.amount == task.metadata["cost"]["credits"]


async def test_a_dropped_stream_is_resubscribed_and_nothing_is_lost(
    start_gateway: StartGateway, a2a_client: MakeA2A
) -> None:
    gw = await start_gateway(CONFIG)
    key = await gw.new_key()
    client = await a2a_client(gw, key, "slow")
    text = " ".join(f"w{i}" for i in range(30))  # 1.5 s: still running when resubscribed
    stream = client.send_message(message(text))
    first = [await anext(stream), await anext(stream), await anext(stream)]
    await stream.aclose()  # the client drops the connection: the task goes on
    task_id = first[0].task.id
    events = await collect(client.subscribe(a2a.SubscribeToTaskRequest(id=task_id)))
    assert events[0].task.id == task_id  # first, the task as it is now
    assert events[0].task.status.state == a2a.TASK_STATE_WORKING
    resent = "".join(p.text for e in events for p in e.artifact_update.artifact.parts)
    assert resent == text  # every chunk, those sent before the drop too
    assert events[-1].status_update.status.state == a2a.TASK_STATE_COMPLETED
    # Nothing is left to subscribe to once it has ended.
    with pytest.raises(UnsupportedOperationError):
        await collect(client.subscribe(a2a.SubscribeToTaskRequest(id=task_id)))


async def test_a_context_continues_over_a_chat_only_upstream(
    start_gateway: StartGateway,
    a2a_client: MakeA2A,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    key = await gw.new_key()
    client = await a2a_client(gw, key, "up")
    events = await collect(client.send_message(message("my name is Ada")))
    first = events[0].task
    assert events[-1].status_update.status.state == a2a.TASK_STATE_COMPLETED
    assert "".join(p.text for e in events for p in e.artifact_update.artifact.parts) == (
        "Hello from upstream"
    )
    assert fake_upstream.last.body["messages"] == [{"role": "user", "content": "my name is Ada"}]
    second = await collect(client.send_message(message("what is my name?", first.context_id)))
    assert second[0].task.context_id == first.context_id and second[0].task.id != first.id
    # The gateway rebuilt the conversation: the upstream keeps no state.
    assert fake_upstream.last.body["messages"] == [
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "Hello from upstream"},
        {"role": "user", "content": "what is my name?"},
    ]
    listed = await client.list_tasks(a2a.ListTasksRequest(context_id=first.context_id))
    assert {t.id for t in listed.tasks} == {first.id, second[0].task.id}
    # Non-streaming too, and the upstream's usage is the bill (not an estimate).
    plain = await a2a_client(gw, key, "up", streaming=False)
    [done] = await collect(plain.send_message(message("and now?", first.context_id)))
    assert len(fake_upstream.last.body["messages"]) == 5
    assert done.task.metadata["usage"]["inputTokens"] == 11
    assert done.task.metadata["usage"]["estimated"] is False
    assert done.task.metadata["cost"]["credits"] == 11 * 1 + 3 * 2


async def test_the_bill_is_exact_and_each_task_shows_its_cost(
    start_gateway: StartGateway, a2a_client: MakeA2A
) -> None:
    gw = await start_gateway(CONFIG)
    balance = 1_000_000
    key = await gw.new_key(balance=balance)
    key_id = (await gw.key_of(key)).id
    streamed = await a2a_client(gw, key)
    plain = await a2a_client(gw, key, streaming=False)
    costs = []
    for i in range(3):
        events = await collect(streamed.send_message(message(f"count {i} of three")))
        costs.append(events[-1].status_update.metadata["cost"]["credits"])
        [event] = await collect(plain.send_message(message(f"plain {i} words here")))
        costs.append(event.task.metadata["cost"]["credits"])
    await settled(gw, key_id)
    entries = await usage_entries(gw, key_id, count=6)
    assert sorted(-e.amount for e in entries) == sorted(costs)
    assert all(c > 0 for c in costs)
    assert balance - sum(costs) == await gw.store.balance(key_id)
    assert {e.agent for e in entries} == {"echo"}


async def test_auth_is_a_401_and_an_agent_a_key_may_not_call_does_not_exist_for_it(
    start_gateway: StartGateway, a2a_client: MakeA2A, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(CONFIG)
    only_other = await gw.new_key(agents=("other",))
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}}
    for headers in ({}, {"Authorization": "Bearer sk-not-a-key"}):
        async with http.post(f"{gw.url}/a2a/echo", json=rpc, headers=headers) as r:
            assert r.status == 401
            body = await r.json()
            assert body["jsonrpc"] == "2.0" and body["error"]["code"] == -32603
            assert body["error"]["data"][0]["metadata"]["status"] == "401"
    card = f"{gw.url}/a2a/echo/.well-known/agent-card.json"
    async with http.get(card, headers={"Authorization": f"Bearer {only_other}"}) as r:
        assert r.status == 404
    async with http.get(card, headers={"Authorization": "Bearer sk-not-a-key"}) as r:
        assert r.status == 401
    async with http.get(f"{gw.url}/a2a/nope/.well-known/agent-card.json") as r:
        assert r.status == 404
    auth = {"Authorization": f"Bearer {only_other}"}
    async with http.post(f"{gw.url}/a2a/echo", json=rpc, headers=auth) as r:
        assert r.status == 404
    async with http.get(card.replace("/echo/", "/other/"), headers=auth) as r:
        assert r.status == 200
    with pytest.raises(AgentCardResolutionError):
        await a2a_client(gw, only_other, "echo")


async def test_protocol_errors_are_json_rpc_errors_with_a2a_codes(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(CONFIG)
    key = await gw.new_key()
    poor = await gw.new_key(balance=0)
    url = f"{gw.url}/a2a/echo"

    async def call(body: object, secret: str = key, **headers: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {secret}", "A2A-Version": "1.0", **headers}
        data = body if isinstance(body, bytes) else None
        json = None if isinstance(body, bytes) else body
        async with http.post(url, data=data, json=json, headers=headers) as r:
            assert r.status == 200
            reply: dict[str, Any] = await r.json()
            return reply

    def rpc(method: str, params: object = None, rid: object = 5) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}}

    send = {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}
    assert (await call(b"{not json"))["error"]["code"] == -32700
    assert (await call({"id": 1, "method": "GetTask"}))["error"]["code"] == -32600
    reply = await call(rpc("message/send", send))
    assert reply["error"]["code"] == -32601 and reply["id"] == 5
    assert "'SendMessage'" in reply["error"]["message"]  # 0.3's name: the 1.0 one said
    assert (await call(rpc("GetTask", {"id": "task-x"})))["error"]["code"] == -32001
    assert (await call(rpc("GetTask", {})))["error"]["code"] == -32602
    assert (await call(rpc("SendMessage", {"message": {}})))["error"]["code"] == -32602
    reply = await call(rpc("SendMessage", send), **{"A2A-Version": "0.3"})
    assert reply["error"]["code"] == -32009
    broke = await call(rpc("SendMessage", send, rid="r-1"), poor)
    assert broke["id"] == "r-1" and broke["error"]["code"] == -32603
    assert broke["error"]["data"][0]["reason"] == "INSUFFICIENT_QUOTA"
    done = await call(rpc("SendMessage", send, rid="ok"))
    assert done["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
    nowait = await call(rpc("SendMessage", {**send, "configuration": {"returnImmediately": True}}))
    assert nowait["result"]["task"]["status"]["state"] == "TASK_STATE_WORKING"


async def test_a_function_call_asks_for_input_and_the_answer_continues_the_task(
    start_gateway: StartGateway,
    a2a_client: MakeA2A,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    key = await gw.new_key()
    client = await a2a_client(gw, key, "up", streaming=False)
    asks = Script(content=(), tool_calls=(ToolCallScript("lookup", ('{"q":', "1}"), "c1"),))
    fake_upstream.enqueue(asks, Script(), asks)
    [event] = await collect(client.send_message(message("look it up")))
    task = event.task
    assert task.status.state == a2a.TASK_STATE_INPUT_REQUIRED
    [part] = task.status.message.parts
    call = MessageToDict(part)["data"]["functionCall"]
    assert call == {"callId": "c1", "name": "lookup", "arguments": '{"q":1}'}
    answer = a2a.Message(
        message_id="m-answer",
        role=a2a.ROLE_USER,
        task_id=task.id,
        context_id=task.context_id,
    )
    answer.parts.add().data.struct_value.update(
        {"functionCallOutput": {"callId": "c1", "output": "42"}}
    )
    [event] = await collect(client.send_message(a2a.SendMessageRequest(message=answer)))
    assert event.task.id == task.id and event.task.status.state == a2a.TASK_STATE_COMPLETED
    sent = fake_upstream.last.body["messages"]
    assert sent[0] == {"role": "user", "content": "look it up"}
    assert sent[1]["tool_calls"][0]["id"] == "c1"
    assert sent[2] == {"role": "tool", "tool_call_id": "c1", "content": "42"}
    assert event.task.metadata["cost"]["credits"] == 2 * (11 + 3 * 2)  # both runs
    # An ended task takes no more messages; one waiting for input can be cancelled.
    with pytest.raises(UnsupportedOperationError):
        await collect(client.send_message(a2a.SendMessageRequest(message=answer)))
    [event] = await collect(client.send_message(message("again")))
    waiting = event.task
    assert waiting.status.state == a2a.TASK_STATE_INPUT_REQUIRED
    canceled = await client.cancel_task(a2a.CancelTaskRequest(id=waiting.id))
    assert canceled.status.state == a2a.TASK_STATE_CANCELED


async def test_the_origins_well_known_card_is_the_chosen_routes(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(CONFIG)
    async with http.get(f"{gw.url}/.well-known/agent-card.json") as r:
        assert r.status == 404  # no route chose to be there
        assert (await r.json())["jsonrpc"] == "2.0"  # a JSON-RPC error, as under /a2a
    gw = await start_gateway(CONFIG.replace("    a2a:\n", "    a2a:\n      well_known: true\n"))
    async with http.get(f"{gw.url}/.well-known/agent-card.json") as r:
        assert r.status == 200
        card = await r.json()
    assert card["supportedInterfaces"][0]["url"] == f"{gw.url}/a2a/echo"


async def test_a_refused_send_is_counted_and_logged_with_its_status(
    start_gateway: StartGateway, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await start_gateway(CONFIG)
    poor = await gw.new_key(balance=0)
    send = {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": send}
    with caplog.at_level("INFO", logger="gateway.requests"):
        async with http.post(
            f"{gw.url}/a2a/echo", json=rpc, headers={"Authorization": f"Bearer {poor}"}
        ) as r:
            assert r.status == 200 and (await r.json())["error"]["code"] == -32603
        get = {**rpc, "method": "GetTask", "params": {"id": "task-x"}}
        async with http.post(
            f"{gw.url}/a2a/echo", json=get, headers={"Authorization": f"Bearer {poor}"}
        ) as r:
            assert r.status == 200
    refused = [r for r in caplog.records if r.getMessage() == "request refused"]
    assert [(r.status, r.error) for r in refused] == [  # type: ignore[attr-defined]
        (402, "insufficient_quota"),
        (404, "a2a_32001"),
    ]
    async with http.get(f"{gw.url}/metrics") as r:
        text = await r.text()
    assert 'gateway_requests_total{backend="",dialect="a2a",route="echo",status="402"}' in text


async def test_list_tasks_pages_filters_and_refuses_bad_params(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(CONFIG)
    key = await gw.new_key()
    headers = {"Authorization": f"Bearer {key}"}

    async def call(method: str, params: dict[str, Any]) -> dict[str, Any]:
        rpc = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        async with http.post(f"{gw.url}/a2a/echo", json=rpc, headers=headers) as r:
            reply: dict[str, Any] = await r.json()
            return reply

    empty = (await call("ListTasks", {}))["result"]
    assert empty == {"tasks": [], "nextPageToken": "", "pageSize": 0, "totalSize": 0}
    ids = []
    for i in range(3):
        msg = {"messageId": f"m{i}", "role": "ROLE_USER", "parts": [{"text": f"n {i}"}]}
        ids.append((await call("SendMessage", {"message": msg}))["result"]["task"]["id"])
    first = (await call("ListTasks", {"pageSize": 2, "historyLength": 0}))["result"]
    assert [t["id"] for t in first["tasks"]] == ids[:0:-1]  # newest first
    assert first["pageSize"] == 2 and first["totalSize"] == 3 and first["nextPageToken"]
    assert all(t["history"] == [] and "artifacts" not in t for t in first["tasks"])
    rest = await call("ListTasks", {"pageSize": 2, "pageToken": first["nextPageToken"]})
    assert [t["id"] for t in rest["result"]["tasks"]] == ids[:1]
    assert rest["result"]["nextPageToken"] == ""
    full = await call("ListTasks", {"includeArtifacts": True, "status": "TASK_STATE_COMPLETED"})
    assert len(full["result"]["tasks"]) == 3 and full["result"]["tasks"][0]["artifacts"]
    assert (await call("ListTasks", {"status": "TASK_STATE_WORKING"}))["result"]["tasks"] == []
    assert (await call("ListTasks", {"status": "UNRECOGNIZED"}))["result"]["totalSize"] == 3
    later = {"statusTimestampAfter": "2999-01-01T00:00:00Z"}
    assert (await call("ListTasks", later))["result"]["totalSize"] == 0
    since = {"statusTimestampAfter": "2000-01-01T00:00:00.000Z"}
    assert (await call("ListTasks", since))["result"]["totalSize"] == 3
    for bad in (
        {"pageSize": 0},
        {"pageSize": 101},
        {"pageSize": -1},
        {"status": "INVALID_STATUS"},
        {"status": 42},
        {"statusTimestampAfter": "yesterday"},
        {"pageToken": "not-a-token"},
        {"historyLength": -1},
    ):
        assert (await call("ListTasks", bad))["error"]["code"] == -32602, bad


async def test_a_task_whose_process_died_is_not_waited_for_and_can_be_cancelled(
    start_gateway: StartGateway, a2a_client: MakeA2A
) -> None:
    """A run that stops renewing its lease (its process died) leaves its task WORKING:
    a follower stops instead of waiting forever, and a cancel ends it."""
    gw = await start_gateway(CONFIG)
    key = await gw.new_key()
    key_id = (await gw.key_of(key)).id
    client = await a2a_client(gw, key)
    plain = await a2a_client(gw, key, streaming=False)
    [event] = await collect(plain.send_message(message("a task")))
    task = MessageToDict(event.task)
    orphan = {**task, "id": "task-orphan", "status": {"state": "TASK_STATE_WORKING"}}
    submitted = {"task": {**orphan, "status": {"state": "TASK_STATE_SUBMITTED"}}}
    tasks = gw.gateway.a2a_tasks
    await tasks.save(
        key_id, StoredTask("echo", orphan), [submitted], retention_ms=60_000, running=True
    )
    assert await tasks.running(key_id, "task-orphan")
    await gw.store.redis.delete(f"gw:{{{key_id}}}:a2a:task:task-orphan:run")  # the lease ran out
    events = await asyncio.wait_for(
        collect(client.subscribe(a2a.SubscribeToTaskRequest(id="task-orphan"))), 5
    )
    assert [e.WhichOneof("payload") for e in events] == ["task"]  # as it is; then the end
    canceled = await client.cancel_task(a2a.CancelTaskRequest(id="task-orphan"))
    assert canceled.status.state == a2a.TASK_STATE_CANCELED
    with pytest.raises(TaskNotCancelableError):
        await client.cancel_task(a2a.CancelTaskRequest(id="task-orphan"))


async def test_an_upstream_failing_mid_answer_fails_the_task_and_bills_what_came(
    start_gateway: StartGateway,
    a2a_client: MakeA2A,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    key = await gw.new_key()
    client = await a2a_client(gw, key, "up")
    fake_upstream.enqueue(Script(error_after=1, error_message="the upstream fell over"))
    events = await collect(client.send_message(message("go on")))
    final = events[-1].status_update
    assert final.status.state == a2a.TASK_STATE_FAILED
    assert "the upstream fell over" in final.status.message.parts[0].text
    assert "".join(p.text for e in events for p in e.artifact_update.artifact.parts) == "Hello"
    task = await client.get_task(a2a.GetTaskRequest(id=events[0].task.id))
    assert task.status.state == a2a.TASK_STATE_FAILED
    assert task.metadata["error"]["status"] == 502
    [entry] = await usage_entries(gw, (await gw.key_of(key)).id)
    assert -entry.amount == task.metadata["cost"]["credits"] > 0
    # Nothing of a failed task is kept as context: the next turn starts from the message.
    await collect(client.send_message(message("again", task.context_id)))
    assert fake_upstream.last.body["messages"] == [{"role": "user", "content": "again"}]
