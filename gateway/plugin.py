"""The plugin API: what a backend and a filter are. The only import a plugin needs.

Everything a backend or a filter uses of the gateway is here (``__all__``): the
two protocols and their entry-point wrappers, the request's ``CallContext``, the
canonical invocation and events, the error tree, the server-sent events decoder,
the Open Responses item codec (``item_json``, for a backend that speaks that wire
format), ``log_fields`` (a log line with fields, the cheap way the access log
writes one), the checks options take and ``Watchdog`` (a cheap time limit on
each of many waits). The built-in plugins (``gateway_plugins``) import
nothing else of ``gateway``, as a third-party package would not.

A **backend** turns one ``AgentInvocation`` into a stream of canonical events,
in batches. The gateway creates it once per ``backends`` entry of
``gateway.yaml`` (so a connection pool lives as long as the backend), calls
``invoke`` once per request, and calls ``aclose`` at shutdown. ``invoke`` must:

- yield ``Batch``es (tuples of events): the events that arrived together (one
  read of the upstream), a tuple of one for an event alone; content events and
  ``Usage`` (a later report replaces an earlier one), then exactly one terminal
  event (``Completed`` or ``Failed``), nothing after. Anything but a tuple
  breaks the contract: the gateway ends the answer with a logged 502;
- report an upstream failure by raising a ``GatewayError`` (``UpstreamError``,
  ``UpstreamTimeout``, ``RateLimited``, ``InvalidRequest``...) or yielding
  ``Failed``; the gateway turns a raised ``GatewayError`` into ``Failed`` with
  its status, and any other escaping exception into a logged 502;
- never block the event loop, and never swallow ``asyncio.CancelledError`` or
  ``GeneratorExit``: when the client goes away the gateway closes the stream,
  and the backend must release its upstream request in a ``finally``;
- never forward the client's credentials: ``ctx`` carries a key *id* only;
  upstream secrets come from the environment, named in the backend's options.

A **filter** wraps the stream of one request (metering, limits, logging), in
the same batches: a step per upstream read, not per event, which matters on
streams of thousands of chunks. It may observe, drop, add or rewrite events
(yielding new tuples: a batch is never changed in place) but must keep the
stream's shape (one terminal event, last), and must let cancellation through.
A filter that only observes may also be an ``ObservingFilter`` (``observe``): the
gateway then shows it each batch in its own step instead of wrapping the stream.

Third-party packages register a ``BackendPlugin`` under the entry-point group
``agent_gateway.backends`` (a ``FilterPlugin`` under ``agent_gateway.filters``);
``gateway.yaml`` names it by its entry-point name in a backend's (or a
``filters`` entry's) ``type``. Options are a frozen dataclass the gateway validates
(unknown keys, wrong types, missing required values) before calling ``create``.
A field whose metadata has ``{"env": True}`` names an environment variable
that must be set when the configuration is loaded; one with ``{"check": f}``
is refused when ``f(value)`` returns a message (``positive``, ``non_negative``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from gateway.errors import (
    GatewayError,
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.events import (
    Batch,
    Completed,
    ContentEvent,
    Event,
    Failed,
    FinishReason,
    ReasoningDelta,
    Terminal,
    TextDelta,
    TokenLogprob,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    TopLogprob,
    Usage,
    text_delta,
)
from gateway.invocation import (
    AgentInvocation,
    ContentPart,
    FilePart,
    ForcedFunction,
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    ImagePart,
    InputItem,
    JsonObject,
    Message,
    Reasoning,
    ResponseFormat,
    Role,
    Sampling,
    TextPart,
    ToolChoice,
)
from gateway.logs import log_fields
from gateway.route import Route
from gateway.sse import MAX_LINE, ServerSentEvent, SSEDecodeError, SSEDecoder
from gateway.tokens import estimate_input
from gateway.typed import fast_init, maker, non_negative, positive
from gateway.watchdog import Watchdog
from gateway.wire.responses_items import item_json

__all__ = [
    "BACKENDS_GROUP",
    "FILTERS_GROUP",
    "MAX_LINE",
    "AgentInvocation",
    "Backend",
    "BackendPlugin",
    "Batch",
    "CallContext",
    "Completed",
    "ContentEvent",
    "ContentPart",
    "Event",
    "Failed",
    "FilePart",
    "Filter",
    "FilterPlugin",
    "FinishReason",
    "ForcedFunction",
    "FunctionCall",
    "FunctionCallOutput",
    "FunctionTool",
    "GatewayError",
    "ImagePart",
    "InputItem",
    "InvalidRequest",
    "JsonObject",
    "Message",
    "Observer",
    "ObservingFilter",
    "PayloadTooLarge",
    "RateLimited",
    "Reasoning",
    "ReasoningDelta",
    "ResponseFormat",
    "Role",
    "Route",
    "SSEDecodeError",
    "SSEDecoder",
    "Sampling",
    "ServerSentEvent",
    "ServiceUnavailable",
    "Terminal",
    "TextDelta",
    "TextPart",
    "TokenLogprob",
    "ToolCallArgumentsDelta",
    "ToolCallStarted",
    "ToolChoice",
    "TopLogprob",
    "UpstreamError",
    "UpstreamTimeout",
    "Usage",
    "Watchdog",
    "estimate_input",
    "item_json",
    "log_fields",
    "maker",
    "non_negative",
    "observed",
    "positive",
    "text_delta",
]

BACKENDS_GROUP = "agent_gateway.backends"
FILTERS_GROUP = "agent_gateway.filters"


@fast_init
@dataclass(frozen=True, slots=True)
class CallContext:
    """What a backend or filter knows about the request besides its invocation."""

    request_id: str
    key_id: str
    agent: str
    backend: str  # the backend's name in ``gateway.yaml``
    model: str  # the upstream model name: the target's or route's ``model``, else the agent id
    route: Route
    charge_id: str = ""  # unique per attempt, whatever the client's request id


@runtime_checkable
class Backend(Protocol):
    def invoke(self, invocation: AgentInvocation, ctx: CallContext) -> AsyncIterator[Batch]:
        """Start the upstream call; the returned stream ends with one terminal event."""
        ...

    async def aclose(self) -> None:
        """Release pooled resources; called once at shutdown."""
        ...


class Filter(Protocol):
    """Created once at start-up; ``wrap`` is called once per request.

    Filters see the batches after metering (which bills what the upstream
    produced) and before the dialect renders them, in ``filters`` order, the
    first listed closest to the client.
    """

    def wrap(self, batches: AsyncIterator[Batch], ctx: CallContext) -> AsyncIterator[Batch]:
        """Return a stream that yields (possibly changed) batches of ``batches``."""
        ...


class Observer(Protocol):
    """What an observing filter keeps of one request's stream (``ObservingFilter``)."""

    def seen(self, batch: Batch, /) -> None:
        """Each batch as it passes on to the client (never to be changed)."""
        ...

    def end(self) -> None:
        """Once, when the stream has ended or was closed (the client left)."""
        ...


@runtime_checkable
class ObservingFilter(Filter, Protocol):
    """A filter that only watches the stream (a log line, a metric), never changes it.

    ``observe`` is called once per request instead of ``wrap``, and the gateway hands
    the observer each batch in the step that checks the stream (``seen``) and tells it
    when the stream ends (``end``): no layer of the filter's own, so no step of its own
    per read. Where a filter listed after it changes the stream, the gateway uses
    ``wrap`` instead (which must see the same: ``observed`` makes it of ``observe``).
    """

    def observe(self, ctx: CallContext) -> Observer:
        """The observer of one request's stream."""
        ...


async def observed(batches: AsyncIterator[Batch], observer: Observer) -> AsyncIterator[Batch]:
    """``batches`` as they are, shown to ``observer``: an ``ObservingFilter``'s ``wrap``."""
    try:
        async for batch in batches:
            observer.seen(batch)
            yield batch
    finally:
        observer.end()


@dataclass(frozen=True, slots=True)
class BackendPlugin:
    """What a backend entry point refers to: its options type and its factory."""

    options: type[Any]
    create: Callable[[str, Any], Backend]  # (backend name, options instance)


@dataclass(frozen=True, slots=True)
class FilterPlugin:
    """What a filter entry point refers to: its options type and its factory."""

    options: type[Any]
    create: Callable[[Any], Filter]  # (options instance)
