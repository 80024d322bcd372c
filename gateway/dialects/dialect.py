"""The seam every ingress dialect fits: a parser, a renderer, an error body.

A dialect turns a request body into the canonical request (``parse``), a call's
events into its wire format, either as SSE frames batch by batch (``streamer``)
or folded into one JSON body once the call ends (``folder``), and any error into
its error body (``error``). ``gateway.server.door`` serves every dialect through
the same steps (authenticated key, body read within limits, parse, open the
call, stream or fold), so a new dialect is a ``Dialect`` here and one operation
in the route table (``gateway.server.routes``), nothing else.

A dialect whose one endpoint carries many methods (A2A's JSON-RPC: a send that
opens a call, reads of stored tasks that open none) is a ``Methods`` instead: it
parses the envelope and names its method, the door dispatches on that name to an
operation (``gateway.server.door.method_door``), and the dialect wraps what the
operation answers, whole (``result``) or as SSE frames (``frame``), and a method's
error (``failure``) in its envelope.

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


class Methods(Protocol[P]):
    """An ingress wire format whose one endpoint dispatches on a method (JSON-RPC).

    ``name``, ``parse`` and ``error`` are ``Dialect``'s; ``parse`` reads the envelope
    (the method, its parameters, the id its answers carry) and refuses a method the
    dialect does not know. The operations that serve the methods are the door's
    (``gateway.server.door.method_door``); they answer plain values, which the
    dialect puts in its envelope.
    """

    @property
    def name(self) -> str: ...

    def parse(self, body: object, limits: RequestLimits) -> P:
        """The envelope, or a ``GatewayError`` (answered by ``failure``)."""
        ...

    def method(self, parsed: P) -> str:
        """The name of the method ``parsed`` calls (one the dialect knows)."""
        ...

    def result(self, parsed: P, value: object) -> bytes:
        """The JSON body answering ``parsed`` with ``value``."""
        ...

    def frame(self, parsed: P, value: object) -> bytes:
        """One SSE frame of a streamed answer to ``parsed``, carrying ``value``."""
        ...

    def failure(self, parsed: P | None, error: GatewayError) -> tuple[int, bytes] | None:
        """``error`` of a method (``parsed``: ``None`` if its envelope was not read) as
        the method's answer, its status and JSON body; ``None`` for an error of the HTTP
        request itself, which the error middleware answers with ``error``."""
        ...

    def error(self, error: GatewayError, request_id: str) -> tuple[int, bytes]:
        """``error`` as the middlewares answer it (401, 413...): its status and body."""
        ...
