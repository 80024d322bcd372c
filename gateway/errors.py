"""The gateway's one error tree.

Every failure a client can see is a ``GatewayError``; each dialect maps it to
its own error body in one place (``gateway.dialects``), so handlers never build
error responses themselves::

    GatewayError                    500 server_error
    ├── InvalidRequest              400 invalid_request_error (``param`` names the field)
    ├── AuthenticationFailed        401 authentication_error
    ├── InsufficientQuota           402 insufficient_quota
    ├── PermissionDenied            403 permission_error
    ├── NotFound                    404 not_found_error
    ├── PayloadTooLarge             413 invalid_request_error
    ├── RateLimited                 429 rate_limit_error
    ├── ServiceUnavailable          503 server_error
    └── UpstreamError               502 upstream_error (the backend failed or broke its protocol)
        └── UpstreamTimeout         504 upstream_timeout

``ConfigError`` is separate: it is raised at start-up or by ``gateway config
check``, never while serving a request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class GatewayError(Exception):
    """A failure with an HTTP status and an OpenAI-style ``type``/``code``."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}  # e.g. Retry-After and x-ratelimit-* on a 429
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class InsufficientQuota(GatewayError):
    status = 402
    type = "insufficient_quota"
    code = "insufficient_quota"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "access_denied"


class NotFound(GatewayError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "upstream_error"
    code = "upstream_timeout"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a configuration file, located as precisely as known."""

    path: str
    message: str
    file: str = ""
    line: int | None = None

    def __str__(self) -> str:
        """``file:line: key.path: message``; the parts not known are left out (a
        problem with the whole file, such as its YAML syntax, has no key path)."""
        where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        path = f"{self.path}: " if self.path else ""
        return f"{where if self.file else ''}{path}{self.message}"


class ConfigError(Exception):
    """A configuration that must not be served; carries every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = tuple(problems)
