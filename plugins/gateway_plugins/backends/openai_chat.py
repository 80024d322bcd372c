"""``openai_chat``: any OpenAI-compatible Chat Completions upstream.

OpenAI, vLLM, Ollama, LiteLLM, LibreChat's chat endpoint. One pooled
``ClientSession`` per backend. A streaming request is streamed upstream with
``stream_options.include_usage`` so that usage comes back for metering; a
non-streaming one is sent as it came (its answer carries usage), unless
``always_stream`` is set: then the backend's ``timeouts`` apply between chunks
rather than to the whole answer. The key sent upstream comes from the
environment variable ``api_key_env``, never from the client. Closing the event
stream (the client went away) closes the upstream response, which the upstream
sees as a disconnect.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from gateway.plugin import (
    AgentInvocation,
    BackendPlugin,
    Batch,
    CallContext,
    Event,
    GatewayError,
    ServerSentEvent,
)
from gateway_plugins.backends.http import HttpOptions, Upstream
from gateway_plugins.backends.openai_wire import (
    MAX_TOKENS_FIELDS,
    ChunkParser,
    chat_body,
    completion_as_chunk,
)

R = TypeVar("R")  # what a read is parsed from: its frames, or their data


def _max_tokens_field(value: str) -> str | None:
    return None if value in MAX_TOKENS_FIELDS else f"must be one of {', '.join(MAX_TOKENS_FIELDS)}"


@dataclass(frozen=True)
class OpenAIChatOptions(HttpOptions):
    """``base_url`` e.g. https://api.openai.com/v1 or http://vllm:8000/v1."""

    always_stream: bool = False  # stream upstream even when the client did not ask to
    # The request field of the output cap; max_tokens for servers without the other.
    max_tokens_field: str = field(
        default="max_completion_tokens", metadata={"check": _max_tokens_field}
    )


class OpenAIChatBackend:
    def __init__(self, name: str, options: OpenAIChatOptions) -> None:
        self.name = name
        self.upstream = Upstream(name, options)
        self.always_stream = options.always_stream
        self.max_tokens_field = options.max_tokens_field

    def headers(self, ctx: CallContext) -> dict[str, str]:
        headers = {"X-Request-Id": ctx.request_id}
        if self.upstream.options.api_key_env:
            headers["Authorization"] = f"Bearer {self.upstream.secret}"
        return headers

    def body(self, invocation: AgentInvocation, ctx: CallContext) -> dict[str, object]:
        return chat_body(invocation, ctx.model, self.max_tokens_field)

    def invoke(self, invocation: AgentInvocation, ctx: CallContext) -> AsyncIterator[Batch]:
        # The upstream's answer is the stream itself (``Upstream.answer``, one generator):
        # no layer of this backend's own between each read and the gateway.
        parser = ChunkParser()
        done = False

        def body() -> dict[str, object]:
            body = self.body(invocation, ctx)
            if not (invocation.stream or self.always_stream):
                body.pop("stream", None)
                body.pop("stream_options", None)
            return body

        def parse(frame: ServerSentEvent) -> list[Event]:
            nonlocal done
            if frame.data == "[DONE]":
                done = True
                return []
            if frame.event != "message":  # a named event is not a chunk (LibreChat's own)
                return []
            return parser.feed_data(frame.data)

        def reading(
            feed: Callable[[list[R], list[Event]], bool],
        ) -> Callable[[list[R]], tuple[list[Event], GatewayError | None]]:
            # ``parse`` for a read in one call (``Upstream.answer``'s parse_read, of its
            # frames, and parse_texts, of its one-line ``data:`` events' data).
            def read(items: list[R]) -> tuple[list[Event], GatewayError | None]:
                nonlocal done
                events: list[Event] = []
                try:
                    if feed(items, events):
                        done = True
                except GatewayError as exc:
                    return events, exc
                return events, None

            return read

        def whole(completion: dict[str, object]) -> list[Event]:
            # A non-streamed answer, asked for or not: the events a stream of it gives.
            nonlocal done
            done = True
            return parser.feed(completion_as_chunk(completion))

        return self.upstream.answer(
            "/chat/completions",
            body,
            self.headers(ctx),
            parse=parse,
            finished=lambda: done,
            whole=whole,
            last=lambda: parser.finish(done=done),
            parse_read=reading(parser.feed_frames),
            parse_texts=reading(parser.feed_texts),
        )

    async def aclose(self) -> None:
        await self.upstream.aclose()


PLUGIN = BackendPlugin(options=OpenAIChatOptions, create=OpenAIChatBackend)
