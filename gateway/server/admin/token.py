"""The admin API's bearer token: read from the environment, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import os

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.config import GatewayConfig
from gateway.errors import AuthenticationFailed, ConfigError, Problem

ADMIN_TOKEN_DIGEST = web.AppKey("admin_token_digest", bytes)


def admin_token(config: GatewayConfig) -> str:
    """The admin token from ``admin.token_env``; refuse to start on an empty one."""
    name = config.admin.token_env or ""
    token = os.environ.get(name, "")
    if not token.strip():
        problem = Problem("admin.token_env", f"environment variable {name} is empty", config.source)
        raise ConfigError([problem])
    return token.strip()  # a trailing newline (a token read from a file) is not part of it


def digest(token: str) -> bytes:
    # aiohttp decodes header bytes as UTF-8 with surrogateescape, so a header holds lone
    # surrogates for any byte that is not UTF-8 (``Bearer \xff``): encoding the same
    # way gives back the bytes sent, where a plain ``encode()`` raised (a 500).
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


@web.middleware
async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    expected = request.app[ADMIN_TOKEN_DIGEST]
    ok = hmac.compare_digest(digest(given.strip()), expected)
    if scheme.lower() != "bearer" or not given.strip() or not ok:
        raise AuthenticationFailed(
            "the admin API needs 'Authorization: Bearer <admin token>'",
            code="invalid_admin_token",
            headers={"WWW-Authenticate": 'Bearer realm="gateway-admin"'},
        )
    return await handler(request)
