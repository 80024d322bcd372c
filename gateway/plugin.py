"""The plugin API: what a backend and a filter are. The only import a plugin needs.

A **backend** turns one ``AgentInvocation`` into a stream of canonical events.
The gateway creates it once per ``backends`` entry of ``gateway.yaml`` (so a
connection pool lives as long as the backend), calls ``invoke`` once per
request, and calls ``aclose`` at shutdown. ``invoke`` must:

- yield content events and ``Usage`` (a later report replaces an earlier one),
  then exactly one terminal event (``Completed`` or ``Failed``), nothing after;
  each either alone or in a list of the events that arrived together (one read
  of the upstream): a list costs the gateway one step instead of one per event;
- report an upstream failure by raising a ``GatewayError`` (``UpstreamError``,
  ``UpstreamTimeout``, ``RateLimited``, ``InvalidRequest``...) or yielding
  ``Failed``; the gateway turns a raised ``GatewayError`` into ``Failed`` with
  its status, and any other escaping exception into a logged 502;
- never block the event loop, and never swallow ``asyncio.CancelledError`` or
  ``GeneratorExit``: when the client goes away the gateway closes the stream,
  and the backend must release its upstream request in a ``finally``;
- never forward the client's credentials: ``ctx`` carries a key *id* only;
  upstream secrets come from the environment, named in the backend's options.

A **filter** wraps the event stream of one request (metering, limits,
logging). It may observe, drop, add or rewrite events but must keep the
stream's shape (one terminal event, last), and must let cancellation through.
Its ``wrap`` sees the events one at a time, each taking a step of its own (a
microsecond or so); a filter with ``wrap_batches`` instead takes the stream in
batches, a step per upstream read, which matters on streams of thousands of
chunks.

Third-party packages register a ``BackendPlugin`` under the entry-point group
``agent_gateway.backends`` (a ``FilterPlugin`` under ``agent_gateway.filters``);
``gateway.yaml`` names it by its entry-point name in a backend's (or a
``filters`` entry's) ``type``. Options are a frozen dataclass the gateway validates
(unknown keys, wrong types, missing required values) before calling ``create``.
A field whose metadata has ``{"env": True}`` names an environment variable
that must be set when the configuration is loaded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from gateway.events import Batch, Event
from gateway.invocation import AgentInvocation
from gateway.route import Route

BACKENDS_GROUP = "agent_gateway.backends"
FILTERS_GROUP = "agent_gateway.filters"


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a backend or filter knows about the request besides its invocation."""

    request_id: str
    key_id: str
    agent: str
    backend: str  # the backend's name in ``gateway.yaml``
    model: str  # the upstream model name: the target's or route's ``model``, else the agent id
    route: Route
    invocation: AgentInvocation
    charge_id: str = ""  # unique per attempt, whatever the client's request id


@runtime_checkable
class Backend(Protocol):
    def invoke(self, invocation: AgentInvocation, ctx: CallContext) -> AsyncIterator[Event | Batch]:
        """Start the upstream call; the returned stream ends with one terminal event."""
        ...

    async def aclose(self) -> None:
        """Release pooled resources; called once at shutdown."""
        ...


class Filter(Protocol):
    """Created once at start-up; ``wrap`` is called once per request.

    Filters see the events after metering (which bills what the upstream
    produced) and before the dialect renders them, in ``filters`` order, the
    first listed closest to the client.
    """

    def wrap(self, events: AsyncIterator[Event], ctx: CallContext) -> AsyncIterator[Event]:
        """Return a stream that yields (possibly changed) events of ``events``."""
        ...


class BatchFilter(Protocol):
    """A filter that takes the stream in batches (``gateway.events``): the events of
    one upstream read together. Used instead of ``wrap`` when a filter has it."""

    def wrap_batches(self, batches: AsyncIterator[Batch], ctx: CallContext) -> AsyncIterator[Batch]:
        """Return a stream that yields (possibly changed) batches of ``batches``."""
        ...


@dataclass(frozen=True, slots=True)
class BackendPlugin:
    """What a backend entry point refers to: its options type and its factory."""

    options: type[Any]
    create: Callable[[str, Any], Backend]  # (backend name, options instance)


@dataclass(frozen=True, slots=True)
class FilterPlugin:
    """What a filter entry point refers to: its options type and its factory."""

    options: type[Any]
    create: Callable[[Any], Filter | BatchFilter]  # (options instance)
