"""Upstream.events: an upstream's SSE body as events, a malformed one as an UpstreamError;
batches: each read's frames as a backend's events; Upstream.answer: a stream or a JSON answer."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from gateway_plugins.backends.http import HttpOptions, Upstream, batches

from gateway.errors import (
    GatewayError,
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.events import Completed, Event, TextDelta
from gateway.sse import ServerSentEvent
from tests.fakes.loopback import serve


class _Body:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


def answer(*chunks: bytes) -> aiohttp.ClientResponse:
    """A response whose body arrives in ``chunks``."""
    resp: Any = type("Answer", (), {"content": _Body(list(chunks))})()
    return cast(aiohttp.ClientResponse, resp)


def upstream(max_line_bytes: int = 1024) -> Upstream:
    return Upstream("up", HttpOptions(base_url="http://upstream", max_line_bytes=max_line_bytes))


async def test_events_split_anywhere_and_the_last_flushed_at_the_end() -> None:
    reads = [r async for r in upstream().events(answer(b"data: 1\n", b"\ndata: 2", b"\n"))]
    assert reads == [[ServerSentEvent("1")], [ServerSentEvent("2")]]


async def test_events_come_a_list_per_read_and_never_an_empty_one() -> None:
    body = answer(b"data: 1\n\ndata: 2\n\n", b": ping\n\n", b"data: 3\n\n")
    reads = [r async for r in upstream().events(body)]
    assert reads == [[ServerSentEvent("1"), ServerSentEvent("2")], [ServerSentEvent("3")]]


async def test_a_line_past_max_line_bytes_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="malformed"):
        [e async for e in upstream(16).events(answer(b"data: ", b"x" * 40))]


def reads_of(*reads: list[str], closed: list[bool]) -> AsyncGenerator[list[ServerSentEvent], None]:
    """An upstream's reads, each a list of events with these data; ``closed`` is set
    when it is closed."""

    async def gen() -> AsyncGenerator[list[ServerSentEvent], None]:
        try:
            for read in reads:
                yield [ServerSentEvent(data) for data in read]
        finally:
            closed.append(True)

    return gen()


def text(frame: ServerSentEvent) -> list[Event]:
    if frame.data == "bad":
        raise UpstreamError("The upstream sent an event that is not JSON.")
    return [TextDelta(frame.data)]


async def test_batches_are_a_tuple_per_read_up_to_the_end_and_close_the_reads() -> None:
    closed: list[bool] = []
    seen: list[str] = []

    def parse(frame: ServerSentEvent) -> list[Event]:
        seen.append(frame.data)
        return text(frame)

    reads = reads_of(["a", "b"], [], ["end", "never"], ["never"], closed=closed)
    stream = batches(reads, parse, lambda: seen[-1] == "end")
    assert [b async for b in stream] == [(TextDelta("a"), TextDelta("b")), (TextDelta("end"),)]
    assert "never" not in seen and closed == [True]


async def test_batches_keep_what_came_before_a_broken_frame_and_close_when_closed() -> None:
    closed: list[bool] = []
    stream = batches(reads_of(["a", "bad", "c"], closed=closed), text, lambda: False)
    assert await anext(stream) == (TextDelta("a"),)
    with pytest.raises(UpstreamError):
        await anext(stream)
    assert closed == [True]

    closed.clear()
    stream = batches(reads_of(["a"], ["b"], closed=closed), text, lambda: False)
    assert await anext(stream) == (TextDelta("a"),)
    await stream.aclose()  # the client left: the upstream's reads end now, not when collected
    assert closed == [True]


# Upstream.answer: a stream, or one JSON answer to a request that asked for a stream


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/event-stream", b'data: {"t": "a"}\n\ndata: {"t": "b"}\n\ndata: [DONE]\n\n'),
        ("application/json", b'{"t": "ab"}'),
        ("application/json; charset=utf-8", b'{"t": "ab"}'),
    ],
)
async def test_answer_reads_a_stream_or_one_json_answer(content_type: str, body: bytes) -> None:
    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_post("/x", handle)
    runner, url = await serve(app)
    up = Upstream("up", HttpOptions(base_url=url))
    done = False

    def parse(frame: ServerSentEvent) -> list[Event]:
        nonlocal done
        if frame.data == "[DONE]":
            done = True
            return []
        return [TextDelta(orjson.loads(frame.data)["t"])]

    def whole(answer: dict[str, object]) -> list[Event]:
        assert isinstance(answer["t"], str)
        return [TextDelta(answer["t"])]

    try:
        stream = up.answer("/x", {}, {}, parse=parse, finished=lambda: done, whole=whole)
        texts = [e.text for batch in [b async for b in stream] for e in batch]  # type: ignore[union-attr]
    finally:
        await up.aclose()
        await runner.cleanup()
    assert "".join(texts) == "ab"
    assert len(texts) == (1 if "json" in content_type else 2)


async def test_a_json_answer_that_is_not_an_object_is_the_upstreams_fault() -> None:
    async def handle(request: web.Request) -> web.Response:
        return web.json_response([1, 2])

    app = web.Application()
    app.router.add_post("/x", handle)
    runner, url = await serve(app)
    up = Upstream("up", HttpOptions(base_url=url))
    try:
        stream = up.answer("/x", {}, {}, parse=list, finished=bool, whole=list)  # type: ignore[arg-type]
        with pytest.raises(UpstreamError):
            [b async for b in stream]
    finally:
        await up.aclose()
        await runner.cleanup()


async def test_a_json_answer_is_one_batch_with_the_closing_events() -> None:
    async def handle(request: web.Request) -> web.Response:
        return web.json_response({"t": "ab"})

    app = web.Application()
    app.router.add_post("/x", handle)
    runner, url = await serve(app)
    up = Upstream("up", HttpOptions(base_url=url))
    try:
        stream = up.answer(
            "/x",
            {},
            {},
            parse=list,  # type: ignore[arg-type]
            finished=bool,
            whole=lambda answer: [TextDelta(str(answer["t"]))],
            last=lambda: [Completed("stop")],
        )
        assert [b async for b in stream] == [(TextDelta("ab"), Completed("stop"))]
    finally:
        await up.aclose()
        await runner.cleanup()


def test_the_upstream_key_is_read_at_its_first_use_and_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_KEPT_KEY", "sk-first")
    up = Upstream("up", HttpOptions(base_url="http://x", api_key_env="TEST_KEPT_KEY"))
    assert up.secret == "sk-first"
    monkeypatch.setenv("TEST_KEPT_KEY", "sk-second")  # only the process itself could
    assert up.secret == "sk-first"
    assert up.redact("a sk-first b") == "a [redacted] b"
    # A backend made anew (a config reload) reads it again; none named is "".
    again = Upstream("up", HttpOptions(base_url="http://x", api_key_env="TEST_KEPT_KEY"))
    assert again.secret == "sk-second"
    assert Upstream("up", HttpOptions(base_url="http://x")).secret == ""
    monkeypatch.delenv("TEST_KEPT_KEY")
    unset = Upstream("up", HttpOptions(base_url="http://x", api_key_env="TEST_KEPT_KEY"))
    assert unset.secret == ""


# Upstream.post (Posted): the response, or the error it stands for; always released


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, InvalidRequest), (413, PayloadTooLarge), (429, RateLimited), (500, UpstreamError)],
)
async def test_post_raises_an_error_answer_and_releases_its_connection(
    status: int, error: type[GatewayError]
) -> None:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"error": {"message": "no: sk-up-secret"}}, status=status)

    app = web.Application()
    app.router.add_post("/x", handle)
    runner, url = await serve(app)
    up = Upstream("up", HttpOptions(base_url=url, api_key_env="TEST_POSTED_KEY"))
    os.environ["TEST_POSTED_KEY"] = "sk-up-secret"
    try:
        for _ in range(2):  # the second reuses the released connection
            with pytest.raises(error) as raised:
                async with up.post("/x", {"a": 1}, {}):
                    raise AssertionError("an error answer is not entered")
            assert raised.type is error
            assert raised.value.message == f"The upstream answered {status}: no: [redacted]"
        connector = up._client().connector
        assert connector is not None and len(connector._acquired) == 0
    finally:
        del os.environ["TEST_POSTED_KEY"]
        await up.aclose()
        await runner.cleanup()


async def half_an_answer(request: web.Request) -> web.StreamResponse:
    """A JSON answer that stops after its first bytes, the rest never coming in time."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(b'{"t": ')
    await asyncio.sleep(5)
    return response


async def test_post_maps_failures_before_inside_and_after_the_answer() -> None:
    app = web.Application()
    app.router.add_post("/x", half_an_answer)
    runner, url = await serve(app)
    up = Upstream("up", HttpOptions(base_url=url, timeout=0.2))
    try:
        # A timeout inside (a read's; ``answer``'s own watchdog is pinned below, through
        # ``answer``: ``test_a_whole_answer_silent_mid_body_is_an_upstream_timeout``).
        with pytest.raises(UpstreamTimeout, match="backend 'up' timed out"):
            async with up.post("/x", {}, {}) as resp:
                assert resp.status == 200
                raise TimeoutError
        with pytest.raises(ValueError, match="mine"):  # anything else passes as it is
            async with up.post("/x", {}, {}):
                raise ValueError("mine")
    finally:
        await up.aclose()
        await runner.cleanup()
    closed = Upstream("up", HttpOptions(base_url=url, connect_timeout=1))  # nothing listens now
    try:
        with pytest.raises(UpstreamError, match="backend 'up' failed: Client"):
            async with closed.post("/x", {}, {}):
                raise AssertionError("not entered")
    finally:
        await closed.aclose()


# Upstream.answer's time limit (``timeout``): a watchdog's, to the headers, then between
# reads of the body counting from the last read


async def timed(
    handle: Any, *, limit: float = 0.3
) -> tuple[list[str], GatewayError | None, float, Upstream]:
    """What ``answer`` yields from ``handle``'s upstream, the error it ends with, and how
    long it took; the connections are all released."""
    app = web.Application()
    app.router.add_post("/x", handle)
    runner, url = await serve(app)
    up = Upstream("up", HttpOptions(base_url=url, timeout=limit))

    def parse(frame: ServerSentEvent) -> list[Event]:
        return [TextDelta(frame.data)]

    texts: list[str] = []
    error: GatewayError | None = None
    started = asyncio.get_running_loop().time()
    try:
        stream = up.answer(
            "/x", {}, {}, parse=parse, finished=bool, whole=lambda a: [TextDelta(str(a["t"]))]
        )
        try:
            async for batch in stream:
                texts += [e.text for e in batch]  # type: ignore[union-attr]
        except GatewayError as exc:
            error = exc
        took = asyncio.get_running_loop().time() - started
        connector = up._client().connector
        assert connector is not None and len(connector._acquired) == 0
    finally:
        await up.aclose()
        await runner.cleanup()
    return texts, error, took, up


def stream_of(*gaps: float, stall: bool = False, content_type: str = "text/event-stream") -> Any:
    """A handler sending the headers, then an event after each of ``gaps`` seconds (or
    going silent at the end, ``stall``)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        for index, gap in enumerate(gaps):
            await asyncio.sleep(gap)
            await response.write(f"data: {index}\n\n".encode())
        if stall:
            await asyncio.sleep(5)
        return response

    return handle


async def test_a_stream_slower_in_all_than_timeout_but_never_between_reads_is_not_cut() -> None:
    # Six events 0.1 s apart: 0.6 s in all, twice ``timeout`` (a limit counted from the
    # headers, or from the first read, would cut it).
    texts, error, took, _ = await timed(stream_of(*[0.1] * 6))
    assert error is None and texts == [str(i) for i in range(6)] and took >= 0.6


@pytest.mark.parametrize("gaps", [(), (0.05, 0.05)], ids=["before-the-first-event", "between"])
async def test_a_stream_silent_for_timeout_is_an_upstream_timeout(gaps: tuple[float, ...]) -> None:
    texts, error, took, _ = await timed(stream_of(*gaps, stall=True))
    assert texts == [str(i) for i in range(len(gaps))]  # what came before still counts
    assert isinstance(error, UpstreamTimeout)
    assert error.message == "The upstream of backend 'up' timed out."
    assert 0.3 <= took - sum(gaps) < 2.0  # from the last read, not later


async def test_an_upstream_silent_before_its_headers_is_an_upstream_timeout() -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        raise AssertionError("cut before")

    texts, error, took, _ = await timed(handle)
    assert texts == [] and isinstance(error, UpstreamTimeout)
    assert error.message == "The upstream of backend 'up' timed out."
    assert 0.3 <= took < 2.0


async def test_a_whole_answer_silent_mid_body_is_an_upstream_timeout() -> None:
    texts, error, took, _ = await timed(half_an_answer)
    assert texts == [] and isinstance(error, UpstreamTimeout)
    assert error.message == "The upstream of backend 'up' timed out."
    assert 0.3 <= took < 2.0


async def test_a_streamed_answer_arms_no_timer_per_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiohttp's read timer (``sock_read``) re-armed at every read costs a loop timer
    per chunk; ``answer``'s watchdog shares one timer. Fails if the session's timeout
    sets a read timer again (the saving would be lost, silently)."""
    loop = asyncio.get_running_loop()
    armed: list[float] = []
    call_later = loop.call_later

    def spy(delay: float, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        armed.append(delay)
        return call_later(delay, *args, **kwargs)

    monkeypatch.setattr(loop, "call_later", spy)
    texts, error, _, _ = await timed(stream_of(*[0.01] * 20), limit=30)
    assert error is None and len(texts) == 20
    assert armed.count(30) == 0, armed  # one per read with aiohttp's: 22


def pieces_answer(pieces: list[bytes], length: bool) -> Handler:
    """A JSON answer written in ``pieces`` a few milliseconds apart (with its length or
    chunked)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if length:
            response.content_length = sum(map(len, pieces))
        await response.prepare(request)
        for piece in pieces:
            await response.write(piece)
            await asyncio.sleep(0.005)
        await response.write_eof()
        return response

    return handler


@pytest.mark.parametrize("length", [True, False])
@pytest.mark.parametrize(
    ("pieces", "read"),
    [
        ([b""], b""),
        ([b"0123456789"], b"0123456789"),  # at the limit
        ([b"01234", b"56789"], b"0123456789"),  # at the limit, in two reads
        ([b"0", b"1", b"2"], b"012"),
        ([b"0123456789x"], None),  # over it, in one read
        ([b"01234", b"56789", b"x"], None),  # over it, in the last read
    ],
)
async def test_a_whole_answer_is_read_to_its_end_within_max_response_bytes(
    pieces: list[bytes], read: bytes | None, length: bool
) -> None:
    app = web.Application()
    app.router.add_post("/x", pieces_answer(pieces, length))
    runner, url = await serve(app)
    up = Upstream("up", HttpOptions(base_url=url, max_response_bytes=10))
    try:
        async with up.post("/x", {}, {}) as resp:
            if read is None:
                with pytest.raises(UpstreamError, match="larger than 10 bytes"):
                    await up.read_body(resp)
            else:
                assert await up.read_body(resp) == read
    finally:
        await up.aclose()
        await runner.cleanup()
