"""The route table: each endpoint once, for the router and for ``/openapi.json``.

An ``Operation`` names its method, path, handler, who may call it, the JSON
Schema of its body (a name in ``gateway.server.schemas``) and the answers it
gives. The applications register their routes from these tables
(``register``), and ``gateway.server.openapi`` describes the very same tables,
so the published description cannot drift from what is served.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_urldispatcher import AbstractRoute

from gateway.server.credentials import KeyRule, KeyRules, bearer

JSON = "application/json"
SSE = "text/event-stream"

Security = Literal["api_key", "admin_token", "none"]
ErrorDialect = Literal["openai", "anthropic", "a2a"]


@dataclass(frozen=True, slots=True)
class Param:
    """A path or query parameter."""

    name: str
    where: Literal["path", "query"]
    schema: Mapping[str, object] = field(default_factory=lambda: {"type": "string"})
    description: str = ""
    required: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer: its status, and its body's schema per content type (``None``: any)."""

    status: int
    description: str
    content: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str  # aiohttp syntax ({name}), relative to the table's prefix
    handler: Handler
    operation_id: str
    summary: str
    tag: str
    security: Security = "api_key"
    key_rule: KeyRule = bearer  # with "api_key": the headers that carry the key (credentials)
    body: str | None = None  # a schema name in gateway.server.schemas
    params: tuple[Param, ...] = ()
    replies: tuple[Reply, ...] = ()
    errors: tuple[int, ...] = ()  # statuses answered with the dialect's error body
    error_dialect: ErrorDialect = "openai"


@dataclass(frozen=True, slots=True)
class Table:
    """Operations served under each of ``prefixes`` (described under the first)."""

    prefixes: tuple[str, ...]
    operations: tuple[Operation, ...]

    def routes(self) -> Iterable[tuple[str, Operation]]:
        for prefix in self.prefixes:
            for op in self.operations:
                yield prefix + op.path, op


def register(
    router: web.UrlDispatcher,
    tables: Iterable[Table],
    key_rules: KeyRules | None = None,
    wrap: Callable[[Handler], Handler] | None = None,
) -> list[tuple[AbstractRoute, Operation]]:
    """Add every operation's routes, with its handler as ``wrap`` makes it if given;
    record each API-key route's rule in ``key_rules``. The routes, with their operations."""
    added = []
    for table in tables:
        for path, op in table.routes():
            route = router.add_route(
                op.method, path, op.handler if wrap is None else wrap(op.handler)
            )
            if key_rules is not None and op.security == "api_key":
                key_rules[route] = op.key_rule
            added.append((route, op))
    return added


def json_reply(status: int, description: str, schema: str) -> Reply:
    return Reply(status, description, {JSON: schema})


# The errors an authenticated call can always meet.
AUTH_ERRORS = (401, 503)
BODY_ERRORS = (400, 408, 413)
CALL_ERRORS = (*AUTH_ERRORS, *BODY_ERRORS, 402, 403, 404, 429, 502, 504)
