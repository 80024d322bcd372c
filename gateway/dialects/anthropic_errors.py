"""The Anthropic error body, mapped from the one error tree in one place.

``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}``
with the types and statuses Anthropic documents::

    InvalidRequest          400 invalid_request_error (any 4xx status kept, e.g. 405)
    AuthenticationFailed    401 authentication_error
    InsufficientQuota       402 billing_error        (Anthropic's type for payment problems)
    PermissionDenied        403 permission_error
    NotFound                404 not_found_error
    PayloadTooLarge         413 request_too_large
    RateLimited             429 rate_limit_error
    GatewayError            500 api_error
    UpstreamError           502 api_error            (the status is kept: a bad gateway)
    UpstreamTimeout         504 timeout_error        (Anthropic's type for 504)
    ServiceUnavailable      529 overloaded_error     (no backend or store available now)

The SDKs retry 429, 5xx and 529 as they would against Anthropic. Mid-stream,
the same ``error`` object is sent as an ``event: error`` frame.
"""

from __future__ import annotations

import orjson

from gateway.errors import (
    AuthenticationFailed,
    GatewayError,
    InsufficientQuota,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
    UpstreamTimeout,
)

OVERLOADED = 529

# Most specific first: UpstreamTimeout is an UpstreamError.
_TYPES: tuple[tuple[type[GatewayError], str], ...] = (
    (InvalidRequest, "invalid_request_error"),
    (AuthenticationFailed, "authentication_error"),
    (InsufficientQuota, "billing_error"),
    (PermissionDenied, "permission_error"),
    (NotFound, "not_found_error"),
    (PayloadTooLarge, "request_too_large"),
    (RateLimited, "rate_limit_error"),
    (UpstreamTimeout, "timeout_error"),
    (UpstreamError, "api_error"),
    (ServiceUnavailable, "overloaded_error"),
)


def error_type(error: GatewayError) -> str:
    for cls, kind in _TYPES:
        if isinstance(error, cls):
            return kind
    return "api_error"


def status(error: GatewayError) -> int:
    """The HTTP status Anthropic would answer ``error`` with."""
    if isinstance(error, ServiceUnavailable):
        return OVERLOADED
    return error.status


def error_object(error: GatewayError) -> dict[str, object]:
    return {"type": error_type(error), "message": error.message}


def error_json(error: GatewayError, request_id: str = "") -> dict[str, object]:
    body: dict[str, object] = {"type": "error", "error": error_object(error)}
    if request_id:
        body["request_id"] = request_id
    return body


def error_body(error: GatewayError, request_id: str = "") -> bytes:
    return orjson.dumps(error_json(error, request_id))
