"""Open Responses checks shared by the ``test_responses*`` integration tests.

Everything the gateway emits on ``/responses`` in these tests goes through
``check_json`` or ``check_sse``: each response object is validated against the
``openresponses_types`` models (all 31 keys present), and each stream against
the framing rules and the event invariants of the specification.

``RecordingTransport`` sits under the official SDK, so that the bytes the
gateway sent to the SDK are validated too (the SDK's own parsing is lenient).
``ChatUpstream`` is a tiny Chat Completions upstream that serves scripted
chunks verbatim, for chunks the shared fake does not produce (reasoning).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import httpx2
import openai
import openresponses_types as ort
import orjson
from aiohttp import web
from pydantic import BaseModel

from tests.conftest import RunningGateway
from tests.fakes.loopback import serve

Json = dict[str, Any]

RESPONSE_KEYS = frozenset(ort.ResponseResource.model_fields)
assert len(RESPONSE_KEYS) == 31

EVENT_MODELS: dict[str, type[BaseModel]] = {}
for _name in dir(ort):
    if _name.endswith("StreamingEvent"):
        _model = getattr(ort, _name)
        EVENT_MODELS[next(iter(_model.model_fields["type"].annotation)).value] = _model
assert len(EVENT_MODELS) == 24

LIFECYCLE = (
    "response.created",
    "response.queued",
    "response.in_progress",
    "response.completed",
    "response.failed",
    "response.incomplete",
)
TERMINAL = ("response.completed", "response.failed", "response.incomplete")


def check_response(response: Json) -> Json:
    """A response object: every key of the spec, valid against ``ResponseResource``."""
    assert set(response) >= RESPONSE_KEYS, f"missing keys: {RESPONSE_KEYS - set(response)}"
    ort.ResponseResource.model_validate(response)
    assert response["object"] == "response"
    assert response["id"].startswith("resp_")
    assert isinstance(response["metadata"], dict)
    ids = [item["id"] for item in response["output"]]
    assert len(set(ids)) == len(ids), "output item ids must be unique"
    for n, item in enumerate(response["output"]):
        assert item["status"] in ("completed", "incomplete")
        if item["status"] == "incomplete":
            assert n == len(response["output"]) - 1, "an incomplete item must be the last"
            assert response["status"] in ("incomplete", "failed", "cancelled")
        if item["type"] == "message":
            for part in item["content"]:
                if part["type"] == "output_text":
                    assert part["annotations"] == [] and part["logprobs"] == []
    if response["status"] == "completed":
        assert response["completed_at"] is not None
    else:
        assert response["completed_at"] is None
    usage = response["usage"]
    if usage is not None:
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    if response["status"] == "failed":
        assert response["error"] is not None
        assert isinstance(response["error"]["code"], str)
    else:
        assert response["error"] is None
    if response["status"] == "incomplete":
        assert response["incomplete_details"] is not None
    return response


def check_error(body: Json, status: int) -> Json:
    """An HTTP error body: ``{"error": {message, type, param, code}}``."""
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) >= {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str)
    assert status >= 400
    return error


def check_json(path: str, method: str, status: int, body: Json) -> None:
    """Any JSON answer of the ``/responses`` endpoints."""
    if status >= 400:
        check_error(body, status)
        return
    if method == "DELETE":
        assert body == {"id": body["id"], "object": "response.deleted", "deleted": True}
    elif path.endswith("/input_items"):
        assert set(body) == {"object", "data", "first_id", "last_id", "has_more"}
        assert body["object"] == "list"
        for item in body["data"]:
            assert isinstance(item["id"], str) and item["id"]
        if body["data"]:
            assert body["first_id"] == body["data"][0]["id"]
            assert body["last_id"] == body["data"][-1]["id"]
        else:
            assert body["first_id"] is None and body["last_id"] is None
    else:
        check_response(body)


@dataclass
class Stream:
    """A parsed, checked event stream."""

    events: list[Json]

    @property
    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    @property
    def final(self) -> Json:
        terminal = [e for e in self.events if e["type"] in TERMINAL]
        assert len(terminal) == 1
        response: Json = terminal[0]["response"]
        return response

    def of(self, kind: str) -> list[Json]:
        return [e for e in self.events if e["type"] == kind]

    @property
    def text(self) -> str:
        return "".join(e["delta"] for e in self.of("response.output_text.delta"))


def parse_frames(raw: bytes) -> list[Json]:
    """Strict framing: ``event: <type>\\ndata: <one-line JSON>\\n\\n``, then ``data: [DONE]``."""
    assert b"\r" not in raw, "LF line endings only"
    assert raw.endswith(b"data: [DONE]\n\n"), f"the stream must end with [DONE]: {raw[-200:]!r}"
    frames = raw.split(b"\n\n")
    assert frames[-1] == b""
    frames = frames[:-1]
    assert frames[-1] == b"data: [DONE]"
    events = []
    for frame in frames[:-1]:
        lines = frame.split(b"\n")
        assert len(lines) == 2, f"a frame is one event line and one data line: {frame[:300]!r}"
        assert lines[0].startswith(b"event: "), frame[:300]
        assert lines[1].startswith(b"data: "), frame[:300]
        name = lines[0][len(b"event: ") :].decode()
        event = orjson.loads(lines[1][len(b"data: ") :])
        assert event["type"] == name, f"event: {name} carries type {event['type']}"
        events.append(event)
    return events


def check_events(events: list[Json]) -> Stream:
    """The invariants of one Open Responses event stream, and every event's schema."""
    assert events, "no events"
    for event in events:
        model = EVENT_MODELS.get(event["type"])
        assert model is not None, f"not a spec event: {event['type']}"
        model.model_validate(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))

    types = [e["type"] for e in events]
    assert types[0] == "response.created"
    assert types[1] in ("response.in_progress", "response.queued")
    assert types[-1] in TERMINAL, types[-1]
    assert sum(t in TERMINAL for t in types) == 1
    cancelled = events[-1]["response"]["status"] == "cancelled"
    if types[-1] == "response.failed" and not cancelled:
        assert types[-2] == "error", "a failure is an error event, then response.failed"
        error = events[-2]["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str)
    else:  # a cancelled response ends with response.failed too, but without an error
        assert "error" not in types

    lifecycle = [e for e in events if e["type"] in LIFECYCLE]
    ids = {e["response"]["id"] for e in lifecycle}
    assert len(ids) == 1, f"lifecycle events carry different ids: {ids}"
    for event in lifecycle:
        check_response(event["response"])
    for event in lifecycle[:-1]:
        snapshot = event["response"]
        assert snapshot["status"] in ("in_progress", "queued")
        assert snapshot["output"] == [] and snapshot["usage"] is None
        assert snapshot["completed_at"] is None
    final = lifecycle[-1]["response"]
    expected_status = {
        "response.completed": "completed",
        "response.failed": "failed",
        "response.incomplete": "incomplete",
    }[types[-1]]
    assert final["status"] == ("cancelled" if cancelled else expected_status)
    # Everything but the final snapshot's output and status-dependent fields is stable.
    stable = ("created_at", "model", "previous_response_id", "instructions", "tools", "tool_choice")
    for key in stable:
        assert {orjson.dumps(e["response"][key]) for e in lifecycle} == {
            orjson.dumps(final[key])
        }, key

    _check_items(events, final)
    return Stream(events)


@dataclass
class _Open:
    item: Json
    parts: dict[int, list[str]] = field(default_factory=dict)  # content_index -> deltas
    parts_open: set[int] = field(default_factory=set)
    parts_done: dict[int, Json] = field(default_factory=dict)
    summary: dict[int, list[str]] = field(default_factory=dict)  # summary_index -> deltas
    summary_open: set[int] = field(default_factory=set)
    summary_done: dict[int, Json] = field(default_factory=dict)
    arguments: list[str] = field(default_factory=list)
    done: Json | None = None


def _check_items(events: list[Json], final: Json) -> None:
    items: dict[int, _Open] = {}  # by output_index
    open_index: int | None = None
    for event in events:
        kind = event["type"]
        if kind == "response.output_item.added":
            assert open_index is None, "items are streamed one at a time"
            index = event["output_index"]
            assert index == len(items), "output_index is the item's position, never repeated"
            item = event["item"]
            assert item["status"] == "in_progress"
            assert isinstance(item["id"], str) and item["id"]
            if item["type"] == "message":
                assert item["content"] == [] and item["role"] == "assistant"
            elif item["type"] == "function_call":
                assert item["arguments"] == ""
                assert item["name"] and item["call_id"]
            elif item["type"] == "reasoning":
                assert item["summary"] == []
            items[index] = _Open(item)
            open_index = index
            continue
        if "output_index" not in event:
            continue
        index = event["output_index"]
        assert index == open_index, f"{kind} for item {index}, but {open_index} is open"
        current = items[index]
        if kind != "response.output_item.done":
            assert event["item_id"] == current.item["id"], kind
        if kind == "response.content_part.added":
            ci = event["content_index"]
            assert ci not in current.parts and ci == len(current.parts)
            part = event["part"]
            text_key = "refusal" if part["type"] == "refusal" else "text"
            assert part[text_key] == ""
            current.parts[ci] = []
            current.parts_open.add(ci)
        elif kind in (
            "response.output_text.delta",
            "response.reasoning.delta",
            "response.refusal.delta",
        ):
            assert event["content_index"] in current.parts_open, "a delta needs an open part"
            current.parts[event["content_index"]].append(event["delta"])
        elif kind in ("response.output_text.done", "response.reasoning.done"):
            assert "".join(current.parts[event["content_index"]]) == event["text"]
        elif kind == "response.refusal.done":
            assert "".join(current.parts[event["content_index"]]) == event["refusal"]
        elif kind == "response.content_part.done":
            ci = event["content_index"]
            assert ci in current.parts_open
            current.parts_open.discard(ci)
            part = event["part"]
            text_key = "refusal" if part["type"] == "refusal" else "text"
            assert part[text_key] == "".join(current.parts[ci])
            current.parts_done[ci] = part
        elif kind == "response.reasoning_summary_part.added":
            si = event["summary_index"]
            assert current.item["type"] == "reasoning"
            assert si not in current.summary and si == len(current.summary)
            assert event["part"] == {"type": "summary_text", "text": ""}
            current.summary[si] = []
            current.summary_open.add(si)
        elif kind == "response.reasoning_summary_text.delta":
            assert event["summary_index"] in current.summary_open, "a delta needs an open part"
            current.summary[event["summary_index"]].append(event["delta"])
        elif kind == "response.reasoning_summary_text.done":
            assert "".join(current.summary[event["summary_index"]]) == event["text"]
        elif kind == "response.reasoning_summary_part.done":
            si = event["summary_index"]
            assert si in current.summary_open
            current.summary_open.discard(si)
            assert event["part"] == {"type": "summary_text", "text": "".join(current.summary[si])}
            current.summary_done[si] = event["part"]
        elif kind == "response.function_call_arguments.delta":
            assert current.item["type"] == "function_call"
            current.arguments.append(event["delta"])
        elif kind == "response.function_call_arguments.done":
            assert current.item["type"] == "function_call"
            assert event["arguments"] == "".join(current.arguments)
        elif kind == "response.output_item.done":
            assert not current.parts_open, "parts are done before their item"
            assert not current.summary_open, "summary parts are done before their item"
            done = event["item"]
            assert done["id"] == current.item["id"] and done["type"] == current.item["type"]
            assert done["status"] in ("completed", "incomplete")
            if done["type"] == "message":
                assert done["content"] == [current.parts_done[i] for i in sorted(current.parts)]
            elif done["type"] == "reasoning":
                assert done.get("content", []) == [
                    current.parts_done[i] for i in sorted(current.parts)
                ]
                assert done["summary"] == [current.summary_done[i] for i in sorted(current.summary)]
            else:
                assert done["arguments"] == "".join(current.arguments)
                assert (done["name"], done["call_id"]) == (
                    current.item["name"],
                    current.item["call_id"],
                )
            current.done = done
            open_index = None
    assert open_index is None, "an item was never finished"
    assert [items[i].done for i in range(len(items))] == final["output"], (
        "the final output is exactly the items that were done, in order"
    )


def check_prefix(raw: bytes) -> list[Json]:
    """The whole frames of a stream the client stopped reading: each one valid, in sequence."""
    end = raw.rfind(b"\n\n")
    whole = raw[: end + 2] if end >= 0 else b""
    events = parse_frames(whole + b"data: [DONE]\n\n")
    for event in events:
        EVENT_MODELS[event["type"]].model_validate(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def check_sse(raw: bytes) -> Stream:
    return check_events(parse_frames(raw))


def check_resumed(raw: bytes, after: int) -> list[Json]:
    """A resumed stream (``GET ?stream=true&starting_after=N``): every event valid, numbered
    on from ``after`` with no gap, the last one terminal (or none at all)."""
    events = parse_frames(raw)
    for event in events:
        EVENT_MODELS[event["type"]].model_validate(event)
    assert [e["sequence_number"] for e in events] == list(range(after + 1, after + 1 + len(events)))
    if events:
        assert events[-1]["type"] in TERMINAL
        assert sum(e["type"] in TERMINAL for e in events) == 1
    return events


# Raw HTTP


async def post_raw(
    http: aiohttp.ClientSession, gw: RunningGateway, key: str, body: Json
) -> tuple[int, str, bytes]:
    async with http.post(
        f"{gw.url}/v1/responses", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def create_json(
    http: aiohttp.ClientSession, gw: RunningGateway, key: str, body: Json, status: int = 200
) -> Json:
    """POST a non-streaming request; the answer checked (a response, or an error body)."""
    got, content_type, raw = await post_raw(http, gw, key, body)
    assert got == status, raw[:500]
    assert content_type.startswith("application/json"), content_type
    parsed: Json = orjson.loads(raw)
    check_json("/v1/responses", "POST", got, parsed)
    return parsed


async def create_stream(
    http: aiohttp.ClientSession, gw: RunningGateway, key: str, body: Json
) -> Stream:
    """POST a streaming request; the stream checked from its raw bytes."""
    status, content_type, raw = await post_raw(http, gw, key, {**body, "stream": True})
    assert status == 200, raw[:500]
    assert content_type.startswith("text/event-stream"), content_type
    return check_sse(raw)


async def get_json(
    http: aiohttp.ClientSession, gw: RunningGateway, key: str, path: str, method: str = "GET"
) -> tuple[int, Json]:
    async with http.request(
        method, f"{gw.url}/v1/{path}", headers={"Authorization": f"Bearer {key}"}
    ) as resp:
        body: Json = await resp.json()
        check_json(f"/v1/{path}", method, resp.status, body)
        return resp.status, body


# The SDK, with every byte it receives recorded and checked


@dataclass
class Exchange:
    method: str
    path: str
    query: str
    status: int
    content_type: str
    body: bytearray = field(default_factory=bytearray)
    complete: bool = False  # read to the end


class _Tee(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, exchange: Exchange) -> None:
        self._inner = inner
        self._exchange = exchange

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._exchange.body += chunk
            yield chunk
        self._exchange.complete = True

    async def aclose(self) -> None:
        await self._inner.aclose()


class RecordingTransport(httpx2.AsyncBaseTransport):
    def __init__(self) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self.exchanges: list[Exchange] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        exchange = Exchange(
            request.method,
            request.url.path,
            request.url.query.decode(),
            response.status_code,
            response.headers.get("content-type", ""),
        )
        self.exchanges.append(exchange)
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        return httpx2.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_Tee(response.stream, exchange),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()

    def check(self) -> int:
        """Check every ``/responses`` answer the SDK received; the number checked."""
        checked = 0
        for ex in self.exchanges:
            if "/responses" not in ex.path:
                continue
            if ex.content_type.startswith("text/event-stream") and ex.method == "GET":
                after = dict(parse_qsl(ex.query)).get("starting_after", "-1")
                if ex.complete:
                    check_resumed(bytes(ex.body), int(after))
            elif ex.content_type.startswith("text/event-stream"):
                if ex.complete or bytes(ex.body).endswith(b"data: [DONE]\n\n"):
                    check_sse(bytes(ex.body))
                else:  # the SDK stopped reading (it raises on an error event)
                    check_prefix(bytes(ex.body))
            else:
                assert ex.content_type.startswith("application/json"), ex.content_type
                check_json(ex.path, ex.method, ex.status, orjson.loads(bytes(ex.body)))
            checked += 1
        return checked


@dataclass
class Clients:
    """``clients(gw, key)``: an ``AsyncOpenAI`` whose traffic is checked after the test."""

    transports: list[RecordingTransport] = field(default_factory=list)
    clients: list[openai.AsyncOpenAI] = field(default_factory=list)

    def __call__(self, gw: RunningGateway, key: str, prefix: str = "/v1") -> openai.AsyncOpenAI:
        transport = RecordingTransport()
        client = openai.AsyncOpenAI(
            base_url=f"{gw.url}{prefix}",
            api_key=key,
            max_retries=0,
            timeout=10.0,
            http_client=httpx2.AsyncClient(transport=transport, timeout=10.0),
        )
        self.transports.append(transport)
        self.clients.append(client)
        return client

    async def aclose(self) -> None:
        for client in self.clients:
            await client.close()

    def check(self) -> int:
        return sum(t.check() for t in self.transports)


# A scripted Chat Completions upstream


def chunk(delta: Json | None = None, finish: str | None = None, **extra: Any) -> Json:
    """One ``chat.completion.chunk``."""
    choice = {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "m",
        "choices": [choice],
        **extra,
    }


@dataclass
class ChatUpstream:
    """Serves ``frames`` (chunks, then ``[DONE]``) to every request and records the bodies.

    It only streams: ``chat_config`` sets ``always_stream`` for it."""

    chunks: list[Json] = field(default_factory=list)
    requests: list[Json] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> ChatUpstream:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner, url = await serve(app)
        self.url = f"{url}/v1"
        return self

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for c in self.chunks:
            await response.write(b"data: " + orjson.dumps(c) + b"\n\n")
            await asyncio.sleep(0)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def chat_config(base_url: str, agent: str = "up") -> str:
    """A gateway.yaml with one free ``openai_chat`` route ``agent`` at ``base_url``."""
    return f"""
backends:
  upstream:
    type: openai_chat
    base_url: {base_url}
    always_stream: true
routes:
  {agent}:
    backend: upstream
    model: upstream-model-x
"""


def user_texts(messages: list[Json]) -> list[tuple[str, Any]]:
    """``(role, content)`` of upstream Chat messages, for order checks."""
    return [(m["role"], m.get("content")) for m in messages]
