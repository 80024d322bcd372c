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

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

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
        reading = _Reading()

        def body() -> dict[str, object]:
            body = self.body(invocation, ctx)
            if not (invocation.stream or self.always_stream):
                body.pop("stream", None)
                body.pop("stream_options", None)
            return body

        return self.upstream.answer(
            "/chat/completions",
            body,
            self.headers(ctx),
            parse=reading.parse,
            finished=reading.finished,
            whole=reading.whole,
            last=reading.last,
            parse_read=reading.frames,
            parse_texts=reading.texts,
        )

    async def aclose(self) -> None:
        await self.upstream.aclose()


class _Reading:
    """One call's reading of its answer (``OpenAIChatBackend.invoke``): its chunk parser,
    and whether the answer is done (``[DONE]`` came, or a whole answer). Its methods are
    ``Upstream.answer``'s callbacks: a bound method each per request costs less than
    the closures (and their cells) this replaced."""

    __slots__ = ("done", "parser")

    def __init__(self) -> None:
        self.parser = ChunkParser()
        self.done = False

    def finished(self) -> bool:
        return self.done

    def parse(self, frame: ServerSentEvent) -> list[Event]:
        """One server-sent event's events."""
        if frame.data == "[DONE]":
            self.done = True
            return []
        if frame.event != "message":  # a named event is not a chunk (LibreChat's own)
            return []
        return self.parser.feed_data(frame.data)

    def frames(self, frames: list[ServerSentEvent]) -> tuple[list[Event], GatewayError | None]:
        """``parse`` for a read's frames in one call (``Upstream.answer``'s parse_read)."""
        events: list[Event] = []
        try:
            if self.parser.feed_frames(frames, events):
                self.done = True
        except GatewayError as exc:
            return events, exc
        return events, None

    def texts(self, texts: list[str]) -> tuple[list[Event], GatewayError | None]:
        """``frames`` for a read of one-line ``data:`` events, given their data
        (``Upstream.answer``'s parse_texts)."""
        events: list[Event] = []
        try:
            if self.parser.feed_texts(texts, events):
                self.done = True
        except GatewayError as exc:
            return events, exc
        return events, None

    def whole(self, completion: dict[str, object]) -> list[Event]:
        """A non-streamed answer, asked for or not: the events a stream of it gives."""
        self.done = True
        return self.parser.feed(completion_as_chunk(completion))

    def last(self) -> Iterator[Event]:
        """The closing events, once the answer has been read."""
        return self.parser.finish(done=self.done)


PLUGIN = BackendPlugin(options=OpenAIChatOptions, create=OpenAIChatBackend)
