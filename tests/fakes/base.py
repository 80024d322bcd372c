"""What every fake upstream shares: a server on loopback, recorded requests, scripted
answers, and the faults a real upstream shows.

A fake is a ``FakeUpstream`` subclass with its wire format and nothing else: it
declares its ``routes``, records each request (``record``), picks a script
(``next_script``: a queued one, else ``script``) and hands ``answer`` the request,
how to answer it whole (JSON) and, for a stream, its frames in wire order. ``answer``
applies what every script may ask for (``Faults``): never answering, a slow first
byte, an HTTP error, a JSON answer to a stream request, a slow, cut, stalled,
truncated or garbled stream, keep-alive comments, CRLF line ends, frames split
across writes or all in one. It notices a client that goes away before the answer
is complete (``disconnects``, ``disconnected``).

A frame is ``(kind, writes)``: ``writes`` the bytes of one wire frame (one write, or
several when the fake reproduces an upstream that writes a frame in pieces); ``kind``
is ``"content"`` for a frame that carries answer content, the unit the stream faults
count in (``cut_after=2``: two content frames reach the client, then the cut).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.loopback import dumps, serve

Json = dict[str, Any]
Frame = tuple[str, Sequence[bytes]]
DONE = b"data: [DONE]\n\n"
GARBAGE = b"data: {not json\n\n"


@dataclass(frozen=True)
class Faults:
    """How one answer goes wrong, or how its wire varies; every fake's script extends it."""

    status: int = 200  # >= 400: answer with this status and ``error_body`` (or the fake's own)
    error_body: bytes | None = None
    first_byte_delay: float = 0.0  # seconds before the response starts
    chunk_delay: float = 0.0  # seconds between frames
    hang: bool = False  # never answer (until the client goes away)
    json_answer: bool = False  # answer one JSON body even to a streaming request
    cut_after: int | None = None  # drop the connection after this many content frames
    stall_after: int | None = None  # go silent (connection open) after this many
    end_after: int | None = None  # end the body cleanly after this many: no terminal frame
    # Write ``garbage`` after this many (then go on, or cut, stall or end there as asked).
    garbage_after: int | None = None
    garbage: bytes = GARBAGE  # e.g. a frame that is not JSON, or a line with no end
    keepalive: bool = False  # an SSE comment line before every frame
    crlf: bool = False  # CRLF line endings
    write_size: int | None = None  # split every write into writes of this many bytes
    one_write: bool = False  # the whole stream in one write: the client reads it at once


@dataclass(frozen=True)
class Received:
    path: str
    headers: CIMultiDict[str]  # case-insensitive, as HTTP headers are
    body: Json
    at: float


@dataclass
class Disconnect:
    path: str
    at: float  # time.monotonic() when the fake noticed
    chunks_sent: int  # frames written before


S = TypeVar("S", bound=Faults)


class FakeUpstream(Generic[S]):
    """A scripted upstream on 127.0.0.1: ``await Fake().start()``, ``await fake.close()``."""

    def __init__(self, script: S) -> None:
        self.script = script  # every request's, unless one is queued
        self._queue: deque[S] = deque()
        self.requests: list[Received] = []
        self.disconnects: list[Disconnect] = []
        self.disconnected = asyncio.Event()
        self.completed = 0  # streams written to their end
        self._runner: web.AppRunner | None = None
        self.url = ""  # http://127.0.0.1:PORT

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> Self:
        app = web.Application()
        self.routes(app)
        self._runner, self.url = await serve(app)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def enqueue(self, *scripts: S) -> None:
        """Scripts for the next requests, in order (then ``script`` again)."""
        self._queue.extend(scripts)

    def next_script(self) -> S:
        return self._queue.popleft() if self._queue else self.script

    @property
    def last(self) -> Received:
        assert self.requests, "the fake upstream received no request"
        return self.requests[-1]

    async def wait_disconnect(self, timeout: float) -> Disconnect:  # noqa: ASYNC109
        await asyncio.wait_for(self.disconnected.wait(), timeout)
        return self.disconnects[-1]

    async def record(self, request: web.Request) -> Json:
        """Read and record the request; its JSON body (``{"_raw": ...}`` if not an object)."""
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        if not isinstance(body, dict):
            body = {"_raw": body}
        self.requests.append(
            Received(request.path, CIMultiDict(request.headers), body, time.monotonic())
        )
        return body

    def error_response(self, script: S) -> web.Response:
        """The answer to a script with ``status >= 400``: an OpenAI-shaped error."""
        return web.Response(
            status=script.status,
            body=script.error_body or openai_error(script.status),
            content_type="application/json",
        )

    async def answer(
        self,
        request: web.Request,
        script: S,
        *,
        stream: bool,
        whole: Callable[[], web.Response],
        frames: Callable[[], Iterable[Frame]],
        headers: Mapping[str, str] | None = None,
        refusal: web.Response | None = None,
    ) -> web.StreamResponse:
        """Answer ``request`` as ``script`` says: ``refusal`` if given (after the delays),
        else an error, ``whole()``, or (``stream``) the ``frames()``."""
        sent = 0
        finished = False
        try:
            if script.hang:
                await asyncio.sleep(3600)
            if script.first_byte_delay:
                await asyncio.sleep(script.first_byte_delay)
            if refusal is not None:
                finished = True
                return refusal
            if script.status >= 400:
                finished = True
                return self.error_response(script)
            if not stream or script.json_answer:
                finished = True
                return whole()
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", **(headers or {})}
            )
            await response.prepare(request)
            pending: list[bytes] = []  # held for one write (``one_write``)

            async def send(data: bytes) -> None:
                if script.one_write:
                    pending.append(data)
                else:
                    await _write(response, script, data)

            content = 0
            for kind, writes in frames():
                if kind == "content":
                    if content == script.garbage_after:
                        await send(script.garbage)
                    if content == script.cut_after:
                        # An abrupt end: no terminal frame, no chunked terminator.
                        assert request.transport is not None
                        request.transport.abort()
                        finished = True
                        return response
                    if content == script.stall_after:
                        await asyncio.sleep(3600)  # silent, connection open
                    if content == script.end_after:
                        break
                if script.chunk_delay and sent:
                    await asyncio.sleep(script.chunk_delay)
                if script.keepalive:
                    await send(b": keep-alive\n\n")
                for data in writes:
                    await send(data)
                sent += 1
                content += kind == "content"
            if pending:
                await _write(response, script, b"".join(pending))
            await response.write_eof()
            finished = True
            self.completed += 1
            return response
        finally:
            if not finished:
                self.disconnects.append(Disconnect(request.path, time.monotonic(), sent))
                self.disconnected.set()


async def _write(response: web.StreamResponse, script: Faults, data: bytes) -> None:
    if script.crlf:
        data = data.replace(b"\n", b"\r\n")
    size = script.write_size or len(data)
    for start in range(0, len(data), size):
        await response.write(data[start : start + size])


def sse(data: object, event: str | None = None) -> bytes:
    """One server-sent event: ``data`` as JSON (bytes as they are), named ``event`` if given."""
    head = b"" if event is None else b"event: " + event.encode() + b"\n"
    payload = data if isinstance(data, bytes) else dumps(data)
    return head + b"data: " + payload + b"\n\n"


def json_response(value: object, headers: Mapping[str, str] | None = None) -> web.Response:
    """``value`` as a JSON answer (integers beyond 64 bits included, see ``dumps``)."""
    return web.Response(body=dumps(value), content_type="application/json", headers=headers)


def fail_after(frames: Iterable[Frame], count: int | None, failure: Iterable[Frame]) -> list[Frame]:
    """``frames`` up to ``count`` content frames, then ``failure`` and nothing else
    (``frames`` as they are if there are no more content frames than ``count``)."""
    out: list[Frame] = []
    content = 0
    for kind, writes in frames:
        if kind == "content" and content == count:
            return [*out, *failure]
        out.append((kind, writes))
        content += kind == "content"
    return out


def openai_error(status: int, message: str | None = None) -> bytes:
    """An OpenAI-shaped error body for ``status``."""
    kinds = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}
    return orjson.dumps(
        {
            "error": {
                "message": message or f"fake upstream error {status}",
                "type": kinds.get(status, "server_error"),
                "param": None,
                "code": None,
            }
        }
    )
