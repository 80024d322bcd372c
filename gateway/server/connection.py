"""The HTTP connection under the application: what a client's fault there gets.

aiohttp answers a request it cannot parse (a malformed request line or header,
a line over ``max_header_bytes``, broken chunked framing) itself, before any
middleware runs. Its ``RequestHandler`` logs the parser's exception at ERROR
with a traceback that quotes the raw line, an API key or the admin token with
it, and sends that line back in its 400. And when the body of an answered
request is broken (it timed out, or does not match its ``Content-Encoding``),
aiohttp logs an "Unhandled exception" with a traceback as it drains the rest.

These are a client's faults, which any client can repeat at will: one of them
must cost one calm log line, never a traceback, and never echo the client's
bytes. ``ClientFaultHandler`` answers a malformed request with a fixed reason
(still aiohttp's plain-text 400, connection closed), counts every fault in
``gateway_client_faults_total`` and logs one line without the client's bytes;
anything else it leaves to aiohttp. ``GatewayRunner`` is ``web.AppRunner``
serving its connections with it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    PayloadEncodingError,
)
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway import metrics

log = logging.getLogger(__name__)

# A parser's message names its problem before a colon, and quotes the client's bytes
# after it; only a plain phrase (letters and spaces) is repeated to the client.
_PHRASE = re.compile(r"[A-Za-z][A-Za-z ]{0,79}")

CLIENT_FAULTS = (HttpProcessingError, web.RequestPayloadError, ConnectionError)


def fault_of(exc: BaseException) -> tuple[str, str]:
    """``(metric label, reason for the client and the log)``, free of the client's bytes."""
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        most = f" (at most {limit} bytes)" if limit is not None else ""
        return "line_too_long", f"a request line or header line is too long{most}"
    if isinstance(exc, BadHttpMethod):
        return "bad_request_line", "the request method is not valid (is this TLS to an HTTP port?)"
    if isinstance(exc, BadStatusLine):
        return "bad_request_line", "the request line is malformed"
    if isinstance(exc, InvalidURLError):
        return "bad_request_line", "the request target is malformed"
    if isinstance(exc, InvalidHeader):
        return "bad_header", "a header line is malformed"
    if isinstance(exc, PayloadEncodingError | web.RequestPayloadError):
        return "bad_body", "the request body is malformed"
    if isinstance(exc, HttpProcessingError):
        phrase = exc.message.partition(":")[0].strip()
        detail = f": {phrase}" if _PHRASE.fullmatch(phrase) else ""
        return "bad_request", f"the request is malformed{detail}"
    return "aborted", "the connection broke before the request was finished"


class ClientFaultHandler(RequestHandler):
    """aiohttp's connection handler, calm about client faults (see the module's doc)."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not (isinstance(exc, HttpProcessingError) and 400 <= status < 500):
            return super().handle_error(request, status, exc, message)
        reason = self._fault(exc, request.remote)
        if request.writer.output_size > 0:  # as aiohttp: an answer began, none can follow
            raise ConnectionError("response already started, cannot send the error")
        response = web.Response(status=status, text=f"{status} Bad Request: {reason}.\n")
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, tuple):
            exc = exc[1]
        if isinstance(exc, CLIENT_FAULTS):  # e.g. the rest of a broken body, drained
            self._fault(exc, self._peer())
            return
        super().log_exception(*args, **kw)

    def _fault(self, exc: BaseException, peer: str | None) -> str:
        kind, reason = fault_of(exc)
        metrics.client_fault(kind)
        # A TLS handshake or a port scan as a connection's first bytes is the internet's
        # background noise (aiohttp logs it at DEBUG too).
        noise = isinstance(exc, BadHttpMethod) and self._request_count <= 1
        log.log(
            logging.DEBUG if noise else logging.INFO,
            "client fault from %s: %s",
            peer or "-",
            reason,
            extra={"fault": kind},
        )
        return reason

    def _peer(self) -> str | None:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else None


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        # What ``web.Server.__call__`` does, with the gateway's handler class.
        return ClientFaultHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """``web.AppRunner`` whose connections are served by ``ClientFaultHandler``.

    aiohttp has no parameter for the handler class: the server ``AppRunner``
    builds (with the application's request factory and every keyword argument)
    is kept and only given the subclass whose ``__call__`` makes the handler.
    """

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server
        return server
