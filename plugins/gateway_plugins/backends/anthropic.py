"""``anthropic``: the Anthropic Messages API as an upstream.

``POST {base_url}/v1/messages``, always streamed, with ``x-api-key`` read from
the environment variable ``api_key_env`` (never the client's key) and
``anthropic-version``; an upstream that answers one JSON ``message`` instead of
a stream (LiteLLM's ``/v1/messages`` in some modes) is understood too. How an
invocation maps to the request is documented in ``anthropic_request``, the stream
back to canonical events in ``anthropic_stream``. Usage comes
from ``message_start`` (input, cache writes, cache reads) and the last
``message_delta`` (output); ``cache_read_input_tokens`` are the canonical
cached input and ``cache_creation_input_tokens`` the cache writes, both
counted in ``input_tokens``. Closing the event stream (the client went away)
closes the upstream response, which Anthropic sees as a disconnect.

Example::

    backends:
      claude:
        type: anthropic
        api_key_env: ANTHROPIC_API_KEY
        default_max_tokens: 8192
    routes:
      sonnet:
        backend: claude
        model: claude-sonnet-4-5
        pricing: {input: 3, output: 15, cached_input: 0.3, cache_write: 3.75}
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway.plugin import AgentInvocation, BackendPlugin, Batch, CallContext, positive
from gateway_plugins.backends.anthropic_request import messages_body
from gateway_plugins.backends.anthropic_stream import EventParser, message_as_events
from gateway_plugins.backends.http import HttpOptions, Upstream, json_object
from gateway_plugins.backends.unsupported import refuse_logprobs


@dataclass(frozen=True)
class AnthropicOptions(HttpOptions):
    """``base_url`` without ``/v1``: the backend posts to ``{base_url}/v1/messages``."""

    base_url: str = "https://api.anthropic.com"
    anthropic_version: str = "2023-06-01"
    # Anthropic requires max_tokens: used when neither the request nor the route sets one.
    default_max_tokens: int = field(default=4096, metadata={"check": positive})


class AnthropicBackend:
    def __init__(self, name: str, options: AnthropicOptions) -> None:
        self.name = name
        self.options = options
        self.upstream = Upstream(name, options)

    def headers(self, ctx: CallContext) -> dict[str, str]:
        headers = {
            "anthropic-version": self.options.anthropic_version,
            "X-Request-Id": ctx.request_id,
        }
        if self.options.api_key_env:
            headers["x-api-key"] = self.upstream.secret
        return headers

    def body(self, invocation: AgentInvocation, ctx: CallContext) -> dict[str, object]:
        refuse_logprobs(invocation, "anthropic")
        max_tokens = (
            invocation.max_output_tokens
            or ctx.route.max_output_tokens
            or self.options.default_max_tokens
        )
        return messages_body(invocation, ctx.model, max_tokens)

    def invoke(self, invocation: AgentInvocation, ctx: CallContext) -> AsyncIterator[Batch]:
        # The upstream's answer is the stream itself (``Upstream.answer``, one generator).
        parser = EventParser()
        return self.upstream.answer(
            "/v1/messages",
            lambda: self.body(invocation, ctx),
            self.headers(ctx),
            parse=lambda frame: parser.feed(json_object(frame.data)),
            finished=lambda: parser.done,
            whole=lambda message: parser.feed_all(message_as_events(message)),
            last=parser.finish,
        )

    async def aclose(self) -> None:
        await self.upstream.aclose()


PLUGIN = BackendPlugin(options=AnthropicOptions, create=AnthropicBackend)
