"""Request bodies read within the configured limits, JSON answers, and the budget header."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from gateway.dialects.request_limits import RequestLimits, shape_known, within_shape
from gateway.errors import InvalidRequest, PayloadTooLarge
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
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    try:
        if request.content.is_eof():  # the whole body came with the head: no wait, no timer
            raw = _read_buffered(request)
        else:
            async with asyncio.timeout(read_timeout):
                raw = await request.read()
    except TimeoutError:
        # The rest of the body is unread: mark the stream broken so that the error
        # response closes the connection instead of waiting for those bytes. A timeout,
        # because that is what aiohttp's drain of an unread body (its "lingering close")
        # takes for "stop waiting": any other exception there is logged with a traceback.
        request.content.set_exception(TimeoutError("request body read timed out"))
        raise InvalidRequest(
            f"The request body did not arrive within {read_timeout:g} seconds.",
            code="request_timeout",
            status=408,
        ) from None
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None
    except ConnectionResetError:  # the client left half-way; nobody reads this answer
        raise InvalidRequest("The connection closed before the request body was read.") from None
    except web.RequestPayloadError as exc:  # e.g. a Content-Encoding the body does not match
        detail = " ".join(str(exc).split())
        raise InvalidRequest(f"The request body could not be read: {detail}") from None
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    return raw


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
    raw = await _read(request, limits.max_body_bytes, limits.body_read_timeout)
    body = _parsed(raw)
    return body, (shape_known(limits) if within_shape(raw, limits) else limits)


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
