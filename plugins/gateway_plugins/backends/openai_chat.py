"""``openai_chat``: any OpenAI-compatible Chat Completions upstream.

OpenAI, vLLM, Ollama, LiteLLM, LibreChat's chat endpoint. One pooled
``ClientSession`` per backend; the upstream is always asked to stream, with
``stream_options.include_usage`` so that usage comes back for metering; the
key sent upstream comes from the environment variable ``api_key_env``, never
from the client. Closing the event stream (the client went away) closes the
upstream response, which the upstream sees as a disconnect.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import orjson

from gateway import sse
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.events import Event, Failed
from gateway.invocation import AgentInvocation
from gateway.plugin import BackendPlugin, CallContext
from gateway.sse import SSEDecodeError
from gateway.typed import positive
from gateway_plugins.backends.openai_wire import ChunkParser, chat_body

MAX_ERROR_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class OpenAIChatOptions:
    base_url: str  # e.g. https://api.openai.com/v1 or http://vllm:8000/v1
    api_key_env: str | None = field(default=None, metadata={"env": True})
    # seconds to the first byte, and between chunks
    timeout: float = field(default=60.0, metadata={"check": positive})
    connect_timeout: float = field(default=10.0, metadata={"check": positive})
    max_connections: int = field(default=100, metadata={"check": positive})


class OpenAIChatBackend:
    def __init__(self, name: str, options: OpenAIChatOptions) -> None:
        self.name = name
        self.options = options
        self._url = options.base_url.rstrip("/") + "/chat/completions"
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.options.max_connections),
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=self.options.connect_timeout,
                    sock_read=self.options.timeout,
                ),
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
            )
        return self._session

    def _headers(self, ctx: CallContext) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "X-Request-Id": ctx.request_id}
        if self.options.api_key_env:
            headers["Authorization"] = f"Bearer {os.environ.get(self.options.api_key_env, '')}"
        return headers

    async def invoke(self, invocation: AgentInvocation, ctx: CallContext) -> AsyncIterator[Event]:
        try:
            body = orjson.dumps(chat_body(invocation, ctx.model))
        except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits
            yield Failed(InvalidRequest(f"The request cannot be sent upstream: {exc}."))
            return
        try:
            async with self._client().post(
                self._url, data=body, headers=self._headers(ctx)
            ) as resp:
                if resp.status >= 400:
                    yield Failed(await _http_error(resp))
                    return
                async with contextlib.aclosing(_events(resp)) as events:
                    async for event in events:
                        yield event
        except TimeoutError:
            yield Failed(UpstreamTimeout(f"The upstream of backend '{self.name}' timed out."))
        except aiohttp.ClientError as exc:
            yield Failed(
                UpstreamError(
                    f"The upstream of backend '{self.name}' failed: {exc.__class__.__name__}."
                )
            )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _events(resp: aiohttp.ClientResponse) -> AsyncGenerator[Event, None]:
    parser = ChunkParser()
    done = False
    try:
        async with contextlib.aclosing(sse.decode(resp.content.iter_any())) as frames:
            async for frame in frames:
                if frame.data == "[DONE]":
                    done = True
                    break
                for event in parser.feed(_json(frame.data)):
                    yield event
    except SSEDecodeError as exc:
        yield Failed(UpstreamError(f"The upstream stream is malformed: {exc}"))
        return
    except GatewayError as exc:
        yield Failed(exc)
        return
    for event in parser.finish(done=done):
        yield event


def _json(data: str) -> dict[str, object]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamError("The upstream sent a chunk that is not JSON.") from None
    if not isinstance(value, dict):
        raise UpstreamError("The upstream sent a chunk that is not a JSON object.")
    return value


async def _http_error(resp: aiohttp.ClientResponse) -> GatewayError:
    raw = await resp.content.read(MAX_ERROR_BODY)
    message = raw.decode("utf-8", "replace")[:500]
    try:
        parsed = orjson.loads(raw)
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = error["message"]
        elif isinstance(error, str):
            message = error
    except orjson.JSONDecodeError:
        pass
    detail = f"The upstream answered {resp.status}: {message}"
    if resp.status in (400, 422):
        return InvalidRequest(detail, code="upstream_rejected_request")
    if resp.status == 429:
        return RateLimited(detail)
    return UpstreamError(detail)


PLUGIN = BackendPlugin(options=OpenAIChatOptions, create=OpenAIChatBackend)
