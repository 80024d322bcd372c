"""send_sse: frames made in one burst go out in one write (the last with the end of the
response), and none waits for the next."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.http_writer import StreamWriter
from aiohttp.test_utils import TestClient, TestServer

from gateway.errors import ServiceUnavailable
from gateway.events import Batch, Completed, TextDelta
from gateway.server import middlewares, streaming
from gateway.server.keys import REQUEST_ID


async def serve(
    frames: AsyncIterator[bytes], writes: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> TestClient:
    async def handler(request: web.Request) -> web.StreamResponse:
        request[REQUEST_ID] = "req_test"
        return await streaming.send_sse(request, frames)

    return await counted_server(handler, writes, monkeypatch)


async def counted_server(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    writes: list[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> TestClient:
    """A server of ``handler`` on loopback; what its responses write goes to ``writes``."""
    write, write_eof = web.StreamResponse.write, web.StreamResponse.write_eof

    async def counted(self: web.StreamResponse, data: bytes | bytearray | memoryview) -> None:
        writes.append(bytes(data))
        await write(self, data)

    async def counted_end(self: web.StreamResponse, data: bytes = b"") -> None:
        if data:
            writes.append(b"END:" + data)  # frames written with the end of the response
        await write_eof(self, data)

    app = web.Application(middlewares=[middlewares.errors])
    app.router.add_get("/", handler)
    client = TestClient(TestServer(app))
    await client.start_server()
    monkeypatch.setattr(web.StreamResponse, "write", counted)
    monkeypatch.setattr(web.StreamResponse, "write_eof", counted_end)
    return client


async def at_once(frames: list[bytes]) -> AsyncIterator[bytes]:
    """``frames`` as one upstream read gives them: no wait in between."""
    for frame in frames:
        yield frame


async def test_a_burst_is_one_write_and_a_later_frame_goes_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    burst = [b"data: %d\n\n" % i for i in range(50)]
    arrived: list[float] = []

    async def frames() -> AsyncIterator[bytes]:
        for frame in burst:
            yield frame  # one upstream read's worth: no wait in between
        await asyncio.sleep(0.3)
        yield b"data: late\n\n"

    writes: list[bytes] = []
    client = await serve(frames(), writes, monkeypatch)
    try:
        started = time.monotonic()
        async with client.get("/") as resp:
            body = b""
            async for chunk in resp.content.iter_any():
                body += chunk
                arrived.append(time.monotonic() - started)
        assert body == b"".join(burst) + b"data: late\n\n"
        assert writes == [b"".join(burst), b"END:data: late\n\n"]
        assert arrived[0] < 0.2  # the burst did not wait for the late frame
    finally:
        await client.close()


async def test_a_stream_made_in_one_burst_is_one_write_with_its_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    burst = [b"data: %d\n\n" % i for i in range(20)]

    writes: list[bytes] = []
    client = await serve(at_once(burst), writes, monkeypatch)
    try:
        async with client.get("/") as resp:
            assert await resp.read() == b"".join(burst)
        assert writes == [b"END:" + b"".join(burst)]
    finally:
        await client.close()


async def test_a_large_burst_is_split_between_whole_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming, "BATCH_BYTES", 100)
    burst = [b"data: %03d\n\n" % i for i in range(40)]  # 11 bytes each

    writes: list[bytes] = []
    client = await serve(at_once(burst), writes, monkeypatch)
    try:
        async with client.get("/") as resp:
            assert await resp.read() == b"".join(burst)
        assert len(writes) > 1
        assert all(len(w.removeprefix(b"END:")) % 11 == 0 for w in writes)  # whole frames
    finally:
        await client.close()


@pytest.mark.parametrize(
    "error", [ServiceUnavailable("the store is unavailable"), RuntimeError("a bug")], ids=repr
)
async def test_a_stream_that_fails_after_its_headers_is_cut_at_once(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    async def frames() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        await asyncio.sleep(0.05)
        raise error

    client = await serve(frames(), [], monkeypatch)
    try:
        started = time.monotonic()
        async with client.get("/", timeout=aiohttp.ClientTimeout(total=5)) as resp:
            assert resp.status == 200
            assert await resp.content.readuntil(b"\n\n") == b"data: 1\n\n"
            with pytest.raises(aiohttp.ClientPayloadError):  # broken, never complete
                await resp.read()
        assert time.monotonic() - started < 5  # not left waiting for an end that never comes
    finally:
        await client.close()


async def serve_reads(
    batches: AsyncIterator[Batch],
    writes: list[bytes],
    monkeypatch: pytest.MonkeyPatch,
    keep: Callable[[], Awaitable[None]] | None = None,
) -> TestClient:
    async def handler(request: web.Request) -> web.StreamResponse:
        request[REQUEST_ID] = "req_test"
        return await streaming.send_reads(request, batches, render, b"data: head\n\n", None, keep)

    def render(batch: Batch) -> bytes:
        return b"".join(
            b"data: %s\n\n" % (e.text.encode() if isinstance(e, TextDelta) else b"end")
            for e in batch
        )

    return await counted_server(handler, writes, monkeypatch)


async def test_a_read_is_one_write_the_first_with_the_head_the_last_with_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def batches() -> AsyncIterator[Batch]:
        yield (TextDelta("a"), TextDelta("b"))
        await asyncio.sleep(0.05)
        yield (TextDelta("c"),)
        await asyncio.sleep(0.05)
        yield (TextDelta("d"), Completed())

    writes: list[bytes] = []
    client = await serve_reads(batches(), writes, monkeypatch)
    try:
        async with client.get("/") as resp:
            assert resp.headers["Content-Type"] == "text/event-stream"
            assert await resp.read() == b"".join(
                b"data: %s\n\n" % x for x in (b"head", b"a", b"b", b"c", b"d", b"end")
            )
        assert writes == [
            b"data: head\n\ndata: a\n\ndata: b\n\n",
            b"data: c\n\n",
            b"END:data: d\n\ndata: end\n\n",
        ]
    finally:
        await client.close()


async def test_the_headers_go_out_with_the_first_frames_in_one_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What reaches the connection's transport: one write of the headers and the first
    # read's frames, not the headers alone first (aiohttp's StreamResponse default).
    sent: list[bytes] = []
    write, writelines = StreamWriter._write, StreamWriter._writelines

    def counted(self: StreamWriter, chunk: bytes | bytearray | memoryview) -> None:
        sent.append(bytes(chunk))
        write(self, chunk)

    def counted_lines(self: StreamWriter, chunks: Iterable[bytes]) -> None:
        chunks = [bytes(c) for c in chunks]
        sent.append(b"".join(chunks))
        writelines(self, chunks)

    monkeypatch.setattr(StreamWriter, "_write", counted)
    monkeypatch.setattr(StreamWriter, "_writelines", counted_lines)

    async def batches() -> AsyncIterator[Batch]:
        yield (TextDelta("a"),)
        await asyncio.sleep(0.05)
        yield (Completed(),)

    client = await serve_reads(batches(), [], monkeypatch)
    try:
        async with client.get("/") as resp:
            assert await resp.read() == b"data: head\n\ndata: a\n\ndata: end\n\n"
        first = next(w for w in sent if not w.startswith(b"GET "))  # the client's request
        assert first.startswith(b"HTTP/1.1 200 OK\r\n")
        assert first.endswith(b"data: head\n\ndata: a\n\n\r\n")  # one chunk of the body
    finally:
        await client.close()


async def test_keep_runs_before_the_terminal_frames_go_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writes: list[bytes] = []

    async def keep() -> None:
        writes.append(b"KEPT")

    client = await serve_reads(
        at_once_batches([(TextDelta("a"),), (Completed(),)]), writes, monkeypatch, keep
    )
    try:
        async with client.get("/") as resp:
            assert await resp.read() == b"data: head\n\ndata: a\n\ndata: end\n\n"
        assert writes == [b"data: head\n\ndata: a\n\n", b"KEPT", b"END:data: end\n\n"]
    finally:
        await client.close()


async def at_once_batches(batches: list[Batch]) -> AsyncIterator[Batch]:
    for batch in batches:
        yield batch
