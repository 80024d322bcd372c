"""``gateway.server.door``: a fourth dialect is a parser, a renderer and a registration.

A toy dialect ("lines": text deltas as ``data:`` lines, or one ``{"text": ...}``)
is registered beside the three built in, and served by the real application:
authenticated, metered, streamed or folded, its errors in its own shape.

A toy ``Methods`` dialect ("ops": one endpoint, the method in ``op``) proves the
seam's other form, the one A2A's JSON-RPC door is: an operation that opens no
call, one that opens a call and answers with it whole or streamed, one that hands
its call to a run that outlives the request, and a method's error answered in the
dialect's envelope while the HTTP request's own keep their status.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.dialects.request_limits import RequestLimits
from gateway.errors import GatewayError
from gateway.events import Batch, Failed, TextDelta
from gateway.invocation import AgentInvocation, Message, TextPart
from gateway.pipeline import Call
from gateway.server import middlewares, routes
from gateway.server.api import Operation, Table
from gateway.server.app import create_app
from gateway.server.door import (
    Answer,
    Door,
    Opened,
    Opens,
    Reads,
    Streamed,
    front_door,
    method_door,
)
from gateway.server.keys import API_KEY, GATEWAY
from gateway.wire.fields import as_object, opt_bool, req_str
from tests.conftest import make_config


class _Lines:
    """The renderer: a ``Streamer`` and a ``Folder`` at once."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.failure: GatewayError | None = None

    def head(self) -> bytes:
        return b": lines\n\n"

    def frames(self, batch: Batch) -> bytes:
        self.fold(batch)
        return b"".join(
            b"data: %s\n\n" % e.text.encode() for e in batch if isinstance(e, TextDelta)
        )

    def fold(self, batch: Batch) -> None:
        for event in batch:
            if isinstance(event, TextDelta):
                self.text.append(event.text)
            elif isinstance(event, Failed):
                self.failure = event.error

    def body(self) -> object:
        if self.failure is not None:
            raise self.failure
        return {"text": "".join(self.text)}


class LinesDialect:
    name = "lines"

    def parse(self, body: object, limits: RequestLimits) -> AgentInvocation:
        req = as_object(body, "body")
        return AgentInvocation(
            agent=req_str(req, "model"),
            input=(Message("user", (TextPart(req_str(req, "input")),)),),
            stream=bool(opt_bool(req, "stream")),
        )

    def invocation(self, parsed: AgentInvocation) -> AgentInvocation:
        return parsed

    def streamer(self, parsed: AgentInvocation, ctx: Any, config: Any, path: str) -> _Lines:
        return _Lines()

    def folder(self, parsed: AgentInvocation, ctx: Any, config: Any, path: str) -> _Lines:
        return _Lines()

    def error(self, error: GatewayError, request_id: str) -> tuple[int, bytes]:
        return error.status, orjson.dumps({"lines_error": error.message})


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestClient]:
    door = front_door(LinesDialect())
    table = Table(("/v1",), (Operation("POST", "/lines", door.handler, "lines", "Lines", "x"),))
    monkeypatch.setattr(routes, "PUBLIC", (*routes.PUBLIC, table))
    monkeypatch.setattr(routes, "DOORS", (*routes.DOORS, door))
    client = TestClient(TestServer(create_app(make_config())))
    await client.start_server()
    yield client
    await client.close()


async def new_key(client: TestClient) -> dict[str, str]:
    _, secret = await client.app[GATEWAY].store.create_key("test", balance=1_000_000)
    return {"Authorization": f"Bearer {secret}"}


async def test_a_fourth_dialect_folds_and_streams(client: TestClient) -> None:
    headers = await new_key(client)
    body = {"model": "echo", "input": "one two three"}
    response = await client.post("/v1/lines", json=body, headers=headers)
    assert response.status == 200
    assert await response.json() == {"text": "one two three"}
    assert response.headers["x-gateway-cost"]  # metered like the others

    response = await client.post("/v1/lines", json={**body, "stream": True}, headers=headers)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    text = await response.text()
    assert text == ": lines\n\ndata: one \n\ndata: two \n\ndata: three\n\n"


async def test_its_errors_are_in_its_own_shape(client: TestClient) -> None:
    response = await client.post("/v1/lines", json={"model": "echo", "input": "hi"})
    assert response.status == 401
    assert "lines_error" in await response.json()
    response = await client.post("/v1/lines", json={"input": "hi"}, headers=await new_key(client))
    assert response.status == 400
    assert "model" in (await response.json())["lines_error"]
    assert client.app[middlewares.DIALECTS][routes.DOORS[-1].handler] == "lines"


# The seam's method form ----------------------------------------------------------------

Ops = dict[str, Any]


class OpsDialect:
    """``{"op": name, "text": ...}``; answers ``{"ok": value}``, a method's error
    ``{"failed": message}`` (HTTP 200), but a 413 keeps its status."""

    name = "ops"

    def parse(self, body: object, limits: RequestLimits) -> Ops:
        req = as_object(body, "body")
        if req.get("op") not in ("peek", "say", "later", "stream"):
            raise GatewayError(f"no op {req.get('op')!r}", status=400)
        return req

    def method(self, parsed: Ops) -> str:
        return str(parsed["op"])

    def result(self, parsed: Ops, value: object) -> bytes:
        return orjson.dumps({"ok": value})

    def frame(self, parsed: Ops, value: object) -> bytes:
        return b"data: %s\n\n" % orjson.dumps(value)

    def failure(self, parsed: Ops | None, error: GatewayError) -> tuple[int, bytes] | None:
        if error.status == 413:
            return None
        return 200, orjson.dumps({"failed": error.message, "op": parsed and parsed["op"]})

    def error(self, error: GatewayError, request_id: str) -> tuple[int, bytes]:
        return error.status, orjson.dumps({"ops_error": error.message})


async def _text(call: Call) -> AsyncGenerator[str, None]:
    async with call:  # closing it settles what was delivered
        async for batch in call:
            for event in batch:
                if isinstance(event, TextDelta):
                    yield event.text


class _Say:
    """Opens a call to the echo agent; ``mode`` says how it answers with it."""

    def __init__(self, request: web.Request, parsed: Ops) -> None:
        text = Message("user", (TextPart(str(parsed["text"])),))
        self.invocation = AgentInvocation(agent="slow", input=(text,), stream=True)
        self._request = request
        self._mode = parsed["op"]

    async def answer(self, call: Call) -> Answer:
        if self._mode == "stream":
            return Streamed(_text(call))
        if self._mode == "later":  # a run no request holds: it goes on after the answer
            done = self._request.app[LATER]
            self._request.app[GATEWAY].tasks.spawn(_keep(call, done))
            return "started"
        return "".join([t async for t in _text(call)])


async def _keep(call: Call, done: asyncio.Future[str]) -> None:
    done.set_result("".join([t async for t in _text(call)]))


async def _say(request: web.Request, parsed: Ops) -> Opened:
    return _Say(request, parsed)


async def _peek(request: web.Request, parsed: Ops) -> Answer:
    return {"key": request[API_KEY].name, "calls": request.app[GATEWAY].active_calls}


LATER: web.AppKey[asyncio.Future[str]] = web.AppKey("later")


@pytest.fixture
async def ops(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestClient]:
    say = Opens(_say)
    door: Door[Ops] = method_door(
        OpsDialect(), {"peek": Reads(_peek), "say": say, "later": say, "stream": say}
    )
    table = Table(("/v1",), (Operation("POST", "/ops", door.handler, "ops", "Ops", "x"),))
    monkeypatch.setattr(routes, "PUBLIC", (*routes.PUBLIC, table))
    monkeypatch.setattr(routes, "DOORS", (*routes.DOORS, door))
    app = create_app(make_config())
    app[LATER] = asyncio.get_running_loop().create_future()
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()


async def test_a_methods_dialect_dispatches_reads_and_calls(ops: TestClient) -> None:
    headers = await new_key(ops)
    response = await ops.post("/v1/ops", json={"op": "peek"}, headers=headers)
    assert await response.json() == {"ok": {"key": "test", "calls": 0}}  # no call opened
    response = await ops.post("/v1/ops", json={"op": "say", "text": "a b c"}, headers=headers)
    assert await response.json() == {"ok": "a b c"}
    response = await ops.post("/v1/ops", json={"op": "stream", "text": "a b"}, headers=headers)
    assert response.headers["Content-Type"] == "text/event-stream"
    assert await response.text() == 'data: "a "\n\ndata: "b"\n\n'
    assert ops.app[middlewares.DIALECTS][routes.DOORS[-1].handler] == "ops"


async def test_a_call_handed_to_a_run_outlives_its_request_and_is_metered(
    ops: TestClient,
) -> None:
    gateway = ops.app[GATEWAY]
    key, secret = await gateway.store.create_key("test", balance=1_000_000)
    headers = {"Authorization": f"Bearer {secret}"}
    words = " ".join(f"w{i}" for i in range(10))  # 0.05 s a word: answered long before
    response = await ops.post("/v1/ops", json={"op": "later", "text": words}, headers=headers)
    assert await response.json() == {"ok": "started"}
    assert not ops.app[LATER].done()
    assert await asyncio.wait_for(ops.app[LATER], 5) == words
    await gateway.tasks.drain()
    assert await gateway.store.balance(key.id) < 1_000_000


async def test_a_methods_error_is_its_answer_the_requests_own_keep_their_status(
    ops: TestClient,
) -> None:
    headers = await new_key(ops)
    response = await ops.post("/v1/ops", data=b"{no", headers=headers)
    assert response.status == 200
    assert (await response.json())["failed"].startswith("The request body is not valid JSON")
    response = await ops.post("/v1/ops", json={"op": "nope"}, headers=headers)
    assert await response.json() == {"failed": "no op 'nope'", "op": None}
    response = await ops.post("/v1/ops", json={"op": "say", "text": "hi", "x": 1})
    assert response.status == 401 and "ops_error" in await response.json()
    poor = {"Authorization": f"Bearer {(await ops.app[GATEWAY].store.create_key('p'))[1]}"}
    response = await ops.post("/v1/ops", json={"op": "say", "text": "hi"}, headers=poor)
    assert response.status == 200  # no balance: refused before the call, in the envelope
    assert (await response.json())["op"] == "say"
    big = {"op": "peek", "pad": "x" * (ops.app[GATEWAY].config.limits.max_body_bytes + 1)}
    response = await ops.post("/v1/ops", data=io.BytesIO(orjson.dumps(big)), headers=headers)
    assert response.status == 413 and "ops_error" in await response.json()
