"""``gateway.server.door``: a fourth dialect is a parser, a renderer and a registration.

A toy dialect ("lines": text deltas as ``data:`` lines, or one ``{"text": ...}``)
is registered beside the three built in, and served by the real application:
authenticated, metered, streamed or folded, its errors in its own shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.dialects.request_limits import RequestLimits
from gateway.errors import GatewayError
from gateway.events import Batch, Failed, TextDelta
from gateway.invocation import AgentInvocation, Message, TextPart
from gateway.server import middlewares, routes
from gateway.server.api import Operation, Table
from gateway.server.app import create_app
from gateway.server.door import front_door
from gateway.server.keys import GATEWAY
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
