"""Authentication as one middleware: each API-key route's rule for which header carries
the key, and the key put on the request (``API_KEY``) before the handler runs.

The route table says who may call an operation (``Operation.security``) and, for an
API-key route, which headers carry the key (``Operation.key_rule``): ``bearer``
(``Authorization: Bearer <key>``, every OpenAI-style route under ``/v1`` and its
``/api/agents/v1`` alias) or ``api_key_or_bearer`` (``x-api-key``, as Anthropic's
SDKs send it, else ``Authorization: Bearer``; ``/v1/messages`` and its
``count_tokens``). ``register`` (``gateway.server.api``) records each route's rule;
routes without one (health, ``/openapi.json``, ``/metrics``, unknown paths) pass
untouched. The admin API is a sub-application that checks its own token
(``gateway.server.admin.require_token``).

The middleware is the innermost one: a request refused by the in-flight limit is
never looked up, and a refusal here is mapped to the route's dialect like any other
error (``gateway.server.middlewares.errors``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import AbstractRoute

from gateway.auth import Authenticator
from gateway.errors import AuthenticationFailed
from gateway.server.keys import API_KEY, GATEWAY
from gateway.store import ApiKey

KeyRule = Callable[[Authenticator, Mapping[str, str]], Awaitable[ApiKey]]
"""``(authenticator, request headers) -> the caller's key``, or an ``AuthenticationFailed``."""

API_KEY_HEADER = "x-api-key"


def bearer(auth: Authenticator, headers: Mapping[str, str]) -> Awaitable[ApiKey]:
    """The key in ``Authorization: Bearer``."""
    return auth.authenticate(headers.get("Authorization"))  # its own coroutine: no extra frame


async def api_key_or_bearer(auth: Authenticator, headers: Mapping[str, str]) -> ApiKey:
    """The key in ``x-api-key``, else in ``Authorization: Bearer``."""
    api_key = headers.get(API_KEY_HEADER)
    if api_key is not None:
        return await auth.authenticate_secret(api_key.strip())
    authorization = headers.get("Authorization")
    if not authorization:
        raise AuthenticationFailed(
            "missing API key: send 'x-api-key: <key>' or 'Authorization: Bearer <key>'",
            code="missing_api_key",
        )
    return await auth.authenticate(authorization)


KeyRules = dict[AbstractRoute, KeyRule]
"""Route -> its rule, filled by ``gateway.server.api.register``."""


def middleware(rules: Mapping[AbstractRoute, KeyRule]) -> Middleware:
    """Authenticate a request to a route that has a rule; put its key on the request."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        rule = rules.get(request.match_info.route)
        if rule is not None:
            request[API_KEY] = await rule(request.app[GATEWAY].auth, request.headers)
        return await handler(request)

    return authenticate
