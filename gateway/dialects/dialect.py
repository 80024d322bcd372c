"""The seam every ingress dialect fits: a parser, a renderer, an error body.

A dialect turns a request body into the canonical request (``parse``), a call's
events into its wire format, either as SSE frames batch by batch (``streamer``)
or folded into one JSON body once the call ends (``folder``), and any error into
its error body (``error``). ``gateway.server.door`` serves every dialect through
the same steps (authenticated key, body read within limits, parse, open the
call, stream or fold), so a new dialect is a ``Dialect`` here and one operation
in the route table (``gateway.server.routes``), nothing else.

The methods run once per request (``frames`` and ``fold`` once per batch): they
are plain calls, never awaited, and a renderer is the one object a request makes
to answer in its dialect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

from gateway.dialects.request_limits import RequestLimits
from gateway.errors import GatewayError
from gateway.events import Batch
from gateway.invocation import AgentInvocation

if TYPE_CHECKING:  # types only: a dialect depends on neither at run time
    from gateway.config import GatewayConfig
    from gateway.plugin import CallContext


class Streamer(Protocol):
    """One streamed answer: its SSE frames, in order."""

    def head(self) -> bytes:
        """The frames that open the stream, before the first batch (may be empty)."""
        ...

    def frames(self, batch: Batch) -> bytes:
        """The frames of one batch of events (may be empty); the terminal event's end it."""
        ...


class Folder(Protocol):
    """One answer given whole: the call's batches folded into one JSON body."""

    def fold(self, batch: Batch) -> None: ...

    def body(self) -> object:
        """The answer's JSON body; raises the call's error if it failed."""
        ...


P = TypeVar("P")  # a dialect's parsed request: the invocation, and what its renderers need


class Dialect(Protocol[P]):
    """An ingress wire format. ``name`` labels its requests in ``gateway.metrics``."""

    @property
    def name(self) -> str: ...

    def parse(self, body: object, limits: RequestLimits) -> P:
        """The request, or a 4xx ``GatewayError`` naming what is wrong."""
        ...

    def invocation(self, parsed: P) -> AgentInvocation:
        """The canonical invocation ``parsed`` asks for."""
        ...

    def streamer(self, parsed: P, ctx: CallContext, config: GatewayConfig, path: str) -> Streamer:
        """The renderer of a streamed answer to ``parsed``, for the call ``ctx`` (its
        ``charge_id`` makes the answer's id), as ``config`` and the request ``path``
        (the prefix it came through) say."""
        ...

    def folder(self, parsed: P, ctx: CallContext, config: GatewayConfig, path: str) -> Folder:
        """The renderer of an answer given whole; as ``streamer``."""
        ...

    def error(self, error: GatewayError, request_id: str) -> tuple[int, bytes]:
        """``error`` as this dialect answers it: its status and JSON body."""
        ...
