from __future__ import annotations

import pytest

from gateway.errors import (
    AuthenticationFailed,
    ConfigError,
    GatewayError,
    InsufficientQuota,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    Problem,
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
    UpstreamTimeout,
)


@pytest.mark.parametrize(
    ("cls", "status", "kind"),
    [
        (GatewayError, 500, "server_error"),
        (InvalidRequest, 400, "invalid_request_error"),
        (AuthenticationFailed, 401, "authentication_error"),
        (InsufficientQuota, 402, "insufficient_quota"),
        (PermissionDenied, 403, "permission_error"),
        (NotFound, 404, "not_found_error"),
        (PayloadTooLarge, 413, "invalid_request_error"),
        (RateLimited, 429, "rate_limit_error"),
        (ServiceUnavailable, 503, "server_error"),
        (UpstreamError, 502, "upstream_error"),
        (UpstreamTimeout, 504, "upstream_error"),
    ],
)
def test_status_and_type(cls: type[GatewayError], status: int, kind: str) -> None:
    err = cls("m")
    assert (err.status, err.type, err.message, str(err)) == (status, kind, "m", "m")


def test_overrides_are_per_instance() -> None:
    err = InvalidRequest("m", param="p", code="c", status=422)
    assert (err.param, err.code, err.status) == ("p", "c", 422)
    assert (InvalidRequest.status, InvalidRequest.code) == (400, None)
    assert isinstance(UpstreamTimeout("t"), UpstreamError)


def test_problem_text() -> None:
    assert str(Problem("a.b", "bad", "f.yaml", 3)) == "f.yaml:3: a.b: bad"
    assert str(Problem("a.b", "bad", "f.yaml")) == "f.yaml: a.b: bad"
    assert str(Problem("a.b", "bad")) == "a.b: bad"
    err = ConfigError([Problem("x", "one", "f", 1), Problem("y", "two", "f", 2)])
    assert str(err) == "f:1: x: one\nf:2: y: two"
    assert len(err.problems) == 2
