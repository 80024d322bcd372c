"""Request bodies read within the configured limits, JSON answers, and the budget header."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from gateway.dialects.request_limits import RequestLimits, shape_known, within_shape
from gateway.errors import GatewayError, InvalidRequest, PayloadTooLarge
from gateway.settings import Limits

BODY_READ_TIMEOUT = 30.0


async def read_json(
    request: web.Request, limit: int, *, read_timeout: float = BODY_READ_TIMEOUT
) -> object:
    """The parsed body; 413 above ``limit`` bytes, 400 if it is not JSON.

    The whole body must arrive within ``read_timeout`` seconds, else 408 and the
    connection is closed: a client trickling its body cannot hold a handler.
    """
    return _parsed(await _read(request, limit, read_timeout))


async def _read(request: web.Request, limit: int, read_timeout: float) -> bytes:
    """The raw body, read as ``read_json`` says (not empty)."""
    raw = _read_now(request, limit, read_timeout)
    if raw is not None:
        return raw
    try:
        async with asyncio.timeout(read_timeout):
            raw = await request.read()
    except _READ_ERRORS as exc:
        raise _unreadable(request, exc, limit, read_timeout) from None
    if not raw:
        raise _empty()
    return raw


# What reading a body can raise that ``_unreadable`` answers for.
_READ_ERRORS = (
    TimeoutError,
    web.HTTPRequestEntityTooLarge,
    ConnectionResetError,
    web.RequestPayloadError,
)


def _read_now(request: web.Request, limit: int, read_timeout: float) -> bytes | None:
    """``_read``'s body if it is all buffered (it came with the head: no wait, no
    timer, no coroutine), with ``_read``'s checks and errors; None if more is to come."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    if not request.content.is_eof():
        return None
    try:
        raw = _read_buffered(request)
    except _READ_ERRORS as exc:
        raise _unreadable(request, exc, limit, read_timeout) from None
    if not raw:
        raise _empty()
    return raw


def _unreadable(
    request: web.Request, exc: Exception, limit: int, read_timeout: float
) -> GatewayError:
    """The error to answer for ``exc``, raised while reading the body."""
    if isinstance(exc, TimeoutError):
        # The rest of the body is unread: mark the stream broken so that the error
        # response closes the connection instead of waiting for those bytes. A timeout,
        # because that is what aiohttp's drain of an unread body (its "lingering close")
        # takes for "stop waiting": any other exception there is logged with a traceback.
        request.content.set_exception(TimeoutError("request body read timed out"))
        return InvalidRequest(
            f"The request body did not arrive within {read_timeout:g} seconds.",
            code="request_timeout",
            status=408,
        )
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return _too_large(limit)
    if isinstance(exc, ConnectionResetError):  # the client left half-way; nobody reads this
        return InvalidRequest("The connection closed before the request body was read.")
    detail = " ".join(str(exc).split())  # e.g. a Content-Encoding the body does not match
    return InvalidRequest(f"The request body could not be read: {detail}")


def _empty() -> InvalidRequest:
    return InvalidRequest("The request body is empty; send a JSON object.")


def _parsed(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None


def _read_buffered(request: web.Request) -> bytes:
    """The body of a request whose body is all buffered (its stream at EOF), as
    ``request.read()`` would read it, with its ``client_max_size`` check (the 413),
    without its two ``readany`` coroutines and its copies through a ``bytearray``.

    Unlike ``read()``, this does not keep the body on the request: a later
    ``request.read()`` gets ``b""``. Every request body the gateway reads is read once,
    here."""
    raw = request.content.read_nowait()
    most = request.client_max_size
    if most and len(raw) > most:
        raise web.HTTPRequestEntityTooLarge(most, len(raw))
    return raw


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than this gateway accepts ({limit} bytes).")


async def read_request(request: web.Request, limits: Limits) -> object:
    """A front door's JSON body, within the configured size and read-time limits."""
    return await read_json(request, limits.max_body_bytes, read_timeout=limits.body_read_timeout)


async def read_parse_input(request: web.Request, limits: Limits) -> tuple[object, RequestLimits]:
    """``read_request``'s body, and the limits its parser is to check it against:
    ``limits``, or ``ShapeKnown`` ones when its bytes show it within their depth and
    text limits (``request_limits.within_shape``), which spares the parser its walk."""
    return _parse_input(
        await _read(request, limits.max_body_bytes, limits.body_read_timeout), limits
    )


def parse_input_now(request: web.Request, limits: Limits) -> tuple[object, RequestLimits] | None:
    """``read_parse_input``'s answer (or error) without a coroutine when the body is all
    buffered, as it is when it came with the head; None if more is to come (then await
    ``read_parse_input``)."""
    raw = _read_now(request, limits.max_body_bytes, limits.body_read_timeout)
    return None if raw is None else _parse_input(raw, limits)


def _parse_input(raw: bytes, limits: Limits) -> tuple[object, RequestLimits]:
    return _parsed(raw), (shape_known(limits) if within_shape(raw, limits) else limits)


def json_response(
    body: object, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


BUDGET_HEADER = "X-Gateway-Budget"


def budget(request: web.Request) -> int | None:
    """The per-request spending cap in credits a client may set, if any."""
    raw = request.headers.get(BUDGET_HEADER)
    if raw is None:
        return None
    credits = whole_number(raw.strip())
    if credits is None or credits < 1:
        raise InvalidRequest(
            f"{BUDGET_HEADER} must be a positive whole number of credits.", param=BUDGET_HEADER
        )
    return credits


def whole_number(text: str) -> int | None:
    """``text`` (a header or query value) as a whole number of ASCII digits, else ``None``.

    ``str.isdigit`` alone is not enough: it accepts ``"²"``, which ``int`` refuses,
    and ``int`` refuses more than 4300 digits too; either would be a 500.
    """
    if not (text.isascii() and text.isdigit()):
        return None
    try:
        return int(text)
    except ValueError:  # too many digits
        return None
