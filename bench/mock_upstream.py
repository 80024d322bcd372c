"""A fast mock OpenAI Chat Completions upstream for the benchmark.

``python -m bench.mock_upstream --port P [--chunks N]`` serves
``POST /v1/chat/completions``: a JSON completion with usage, or an SSE stream
(a role chunk, N content chunks, a finish chunk, a usage chunk when
``stream_options.include_usage`` is set, then ``data: [DONE]``), each frame in
its own write. A model named ``mock-chunks-<N>`` streams N content chunks
instead of the default. Every response body is built once per shape and cached.

A model named ``mock-hold-<MS>`` is a slow stream that stays open: the role chunk
and a content chunk at once, then one content chunk every MS milliseconds until ``POST
/v1/mock/release`` releases every stream held so far, then the usual
``HOLD_TOKENS`` content chunks, finish, usage and ``[DONE]`` (usage counts
``HOLD_TOKENS`` however long the stream was held, so that each costs the same).
``GET /v1/mock/held`` says how many streams are held.

A model named ``mock-trickle-<MS>`` streams the default number of content chunks
MS milliseconds apart, as a model's tokens come: each frame reaches the gateway
in a read of its own.

Faults, for the soak test (``bench/soak.py``): the model ``mock-fail`` gets a 500,
``mock-hang`` an answer 5 s late, and ``mock-cut`` a stream whose
connection is cut after its first frames.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson
from aiohttp import web

PROMPT_TOKENS = 12
WORD = "tok "
CREATED = 1_700_000_000
CHUNKS_PREFIX = "mock-chunks-"
HOLD_PREFIX = "mock-hold-"
TRICKLE_PREFIX = "mock-trickle-"
HOLD_TOKENS = 5

_Key = tuple[str, int, bool]


def chunk_count(model: str, default: int) -> int:
    """N from a model named ``mock-chunks-<N>``, else ``default``."""
    if model.startswith(CHUNKS_PREFIX):
        tail = model[len(CHUNKS_PREFIX) :]
        if tail.isdigit():
            return int(tail)
    return default


def hold_interval(model: str) -> float | None:
    """Seconds between chunks of a held stream (``mock-hold-<MS>``), else None."""
    return _milliseconds(model, HOLD_PREFIX)


def trickle_interval(model: str) -> float | None:
    """Seconds between the frames of a trickled stream (``mock-trickle-<MS>``), else None."""
    return _milliseconds(model, TRICKLE_PREFIX)


def _milliseconds(model: str, prefix: str) -> float | None:
    if model.startswith(prefix):
        tail = model[len(prefix) :]
        if tail.isdigit():
            return int(tail) / 1000
    return None


def _usage(n: int) -> dict[str, int]:
    total = n + PROMPT_TOKENS
    return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": n, "total_tokens": total}


def _frame(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def stream_frames(model: str, n: int, include_usage: bool) -> list[bytes]:
    """The SSE frames of one streamed completion with ``n`` content chunks."""
    base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": CREATED}
    base["model"] = model

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _frame({**base, "choices": [choice]})

    frames = [chunk({"role": "assistant", "content": ""})]
    frames.extend(chunk({"content": WORD}) for _ in range(n))
    frames.append(chunk({}, "stop"))
    if include_usage:
        frames.append(_frame({**base, "choices": [], "usage": _usage(n)}))
    frames.append(b"data: [DONE]\n\n")
    return frames


def completion_body(model: str, n: int) -> bytes:
    """The JSON body of one non-streamed completion with ``n`` tokens."""
    message = {"role": "assistant", "content": WORD * n}
    return orjson.dumps(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": _usage(n),
        }
    )


class MockUpstream:
    def __init__(self, default_chunks: int) -> None:
        self.default_chunks = default_chunks
        self._streams: dict[_Key, list[bytes]] = {}
        self._bodies: dict[tuple[str, int], bytes] = {}
        self._release = asyncio.Event()
        self.held = 0

    async def chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
            model = str(body.get("model", "mock"))
        except (orjson.JSONDecodeError, AttributeError):
            return web.json_response({"error": {"message": "bad JSON"}}, status=400)
        if model == "mock-fail":
            return web.json_response({"error": {"message": "mock failure"}}, status=500)
        if model == "mock-hang":
            await asyncio.sleep(5)
        n = chunk_count(model, self.default_chunks)
        if model == "mock-cut" and body.get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for frame in stream_frames(model, n, False)[:3]:
                await response.write(frame)
            if request.transport is not None:
                request.transport.abort()
            return response
        interval = hold_interval(model)
        if interval is not None and body.get("stream"):
            options = body.get("stream_options") or {}
            return await self._hold(request, model, interval, bool(options.get("include_usage")))
        if not body.get("stream"):
            raw = self._bodies.get((model, n))
            if raw is None:
                raw = self._bodies[(model, n)] = completion_body(model, n)
            return web.Response(body=raw, content_type="application/json")
        options = body.get("stream_options") or {}
        key = (model, n, bool(options.get("include_usage")))
        frames = self._streams.get(key)
        if frames is None:
            frames = self._streams[key] = stream_frames(*key)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        pause = trickle_interval(model)
        for i, frame in enumerate(frames):
            if pause is not None and i:
                await asyncio.sleep(pause)
            await response.write(frame)
        await response.write_eof()
        return response

    async def _hold(
        self, request: web.Request, model: str, interval: float, include_usage: bool
    ) -> web.StreamResponse:
        """A stream that trickles a chunk every ``interval`` s until released."""
        key = (model, HOLD_TOKENS, include_usage)
        frames = self._streams.get(key)
        if frames is None:
            frames = self._streams[key] = stream_frames(*key)
        release = self._release
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        await response.write(frames[0] + frames[1])
        self.held += 1
        try:
            while not release.is_set():
                try:
                    await asyncio.wait_for(release.wait(), interval)
                except TimeoutError:
                    await response.write(frames[1])
        finally:
            self.held -= 1
        for frame in frames[1:]:
            await response.write(frame)
        await response.write_eof()
        return response

    async def release(self, request: web.Request) -> web.Response:
        """Let every stream held so far finish; later ones are held until the next call."""
        released, self._release = self._release, asyncio.Event()
        held = self.held
        released.set()
        return web.json_response({"released": held})

    async def held_count(self, request: web.Request) -> web.Response:
        return web.json_response({"held": self.held})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "mock", "object": "model"}]})


def make_app(default_chunks: int) -> web.Application:
    mock = MockUpstream(default_chunks)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", mock.chat)
    app.router.add_get("/v1/models", mock.models)
    app.router.add_post("/v1/mock/release", mock.release)
    app.router.add_get("/v1/mock/held", mock.held_count)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
    args = parser.parse_args()
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop
    except ImportError:
        loop = asyncio.new_event_loop()
    else:
        loop = uvloop.new_event_loop()
    web.run_app(
        make_app(args.chunks),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        loop=loop,
    )


if __name__ == "__main__":
    main()
