"""Reading a request's JSON body within the configured size limit."""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway.errors import InvalidRequest, PayloadTooLarge


async def read_json(request: web.Request, limit: int) -> object:
    """The parsed body; 413 above ``limit`` bytes, 400 if it is not JSON."""
    too_large = PayloadTooLarge(
        f"The request body is larger than this gateway accepts ({limit} bytes)."
    )
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None
    except web.RequestPayloadError as exc:  # e.g. a Content-Encoding the body does not match
        detail = " ".join(str(exc).split())
        raise InvalidRequest(f"The request body could not be read: {detail}") from None
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None


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
    if not raw.strip().isdigit() or int(raw) < 1:
        raise InvalidRequest(
            f"{BUDGET_HEADER} must be a positive whole number of credits.", param=BUDGET_HEADER
        )
    return int(raw)
