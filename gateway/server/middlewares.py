"""Request-level work: request ids, and mapping every failure to an error body.

Handlers raise ``GatewayError`` (or let aiohttp raise its HTTP exceptions); only
``errors`` below turns them into responses, so no handler repeats a try/except. The
body's shape is the dialect's: OpenAI's by default, another for the path prefixes the
application lists in ``ERROR_SHAPES`` (each dialect's ``error`` under its endpoints:
Anthropic's under ``/v1/messages``), so that even a 401, a 413 or an unknown path under
a prefix answers in that prefix's dialect. An unexpected exception is logged with the
request id and answered with a generic 500 that leaks nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Callable, Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import AbstractRoute

from gateway import logs, metrics
from gateway.dialects import openai_errors
from gateway.discovery import access_log_target
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from gateway.ids import random_hex
from gateway.server.credentials import KeyRule
from gateway.server.keys import API_KEY, GATEWAY, REQUEST_ID, app_value

log = logging.getLogger(__name__)

_CLIENT_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

ErrorShape = Callable[[GatewayError, str], tuple[int, bytes]]
"""``(error, request id) -> (status, body)`` in one dialect's error shape."""


def openai_shape(error: GatewayError, request_id: str) -> tuple[int, bytes]:
    return error.status, openai_errors.error_body(error)


# Path prefix -> the error shape of every path at or under it; others get OpenAI's.
ERROR_SHAPES: web.AppKey[dict[str, ErrorShape]] = web.AppKey("error_shapes")


def error_shape(request: web.Request) -> ErrorShape:
    path = request.path
    for prefix, shape in (app_value(request, ERROR_SHAPES) or {}).items():
        if path == prefix or path.startswith(prefix + "/"):
            return shape
    return openai_shape


@web.middleware
async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Take the client's ``X-Request-Id`` if it is sane, else make one; echo it back."""
    given = request.headers.get("X-Request-Id")
    rid = given if given and _CLIENT_ID.fullmatch(given) else "req_" + random_hex()
    request[REQUEST_ID] = rid
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Request-Id"] = rid
        raise
    if not response.prepared:
        response.headers["X-Request-Id"] = rid
    return response


# What ``errors`` answered, for the access log; ``front`` sets it to None first, so that
# reading it is a dictionary read, not a KeyError raised and caught in ``Mapping.get``.
ERROR: web.RequestKey[GatewayError | None] = web.RequestKey("error")

# Handler -> the dialect it speaks; only these requests are measured (``metrics``).
DIALECTS: web.AppKey[dict[Handler, str]] = web.AppKey("dialects")
_NONE: dict[Handler, str] = {}


CLIENT_CLOSED = 499  # the client went away before its answer (nginx's code)


def failed_status(exc: BaseException) -> int:
    """The status a request that ended in ``exc`` is recorded with (metrics and spans)."""
    if isinstance(exc, web.HTTPException):
        return exc.status
    if isinstance(exc, asyncio.CancelledError):
        return CLIENT_CLOSED
    return 500


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Measure a request to an agent endpoint (``gateway.metrics``), and write the access
    log line of one refused before any backend ran; others pass."""
    # The application's own mapping: these middlewares are the main application's, and
    # request.config_dict would build a chain of every application's on each request.
    dialect = request.app.get(DIALECTS, _NONE).get(request.match_info.route.handler)
    if dialect is None:
        return await handler(request)
    obs = metrics.begin(dialect)
    try:
        response = await handler(request)
    except BaseException as exc:
        metrics.finish(obs, failed_status(exc))
        if not obs.backend:
            _log_refused(request, obs, failed_status(exc))
        raise
    status = response.status
    error = request.get(ERROR)
    if status == 200 and error is not None:  # an error in a 200 body (A2A's JSON-RPC)
        status = error.status
    metrics.finish(obs, status)
    if not obs.backend and status >= 400:  # else the access log filter, which saw the
        _log_refused(request, obs, status)  # backend's stream, did (or nothing was called)
    return response


def _log_refused(request: web.Request, obs: metrics.Observation, status: int) -> None:
    """The access log line of a request no backend saw: refused (401, 402, 404, 429...),
    or abandoned before it was admitted. Ids and codes only, never content."""
    target = access_log_target(request.config_dict[GATEWAY].config.filters)
    if target is None:
        return
    logger, level = logging.getLogger(target[0]), logging.getLevelName(target[1].upper())
    if not logger.isEnabledFor(level):
        return
    key = request.get(API_KEY)
    error = request.get(ERROR)
    fields = {
        "request_id": request.get(REQUEST_ID, ""),
        "key_id": key.id if key is not None else None,
        "agent": obs.route or None,
        "outcome": "abandoned" if status == CLIENT_CLOSED else "refused",
        "status": status,
        "error": (error.code or error.type) if error is not None else None,
        "duration_ms": round((time.perf_counter() - obs.started) * 1000, 2),
    }
    logs.log_fields(logger, level, "request %s", (fields["outcome"],), fields)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        request[ERROR] = exc
        return error_response(exc, request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(from_http(exc), request)
    except Exception:
        log.exception("unhandled error on request %s", request.get(REQUEST_ID, "-"))
        return error_response(GatewayError("The gateway failed to handle the request."), request)


# Cheap probes that must answer even at capacity (a failing liveness probe restarts the pod).
UNCOUNTED_PATHS = frozenset({"/healthz", "/readyz"})
RETRY_AFTER_SECONDS = 1


def in_flight_limit(most: int) -> Middleware:
    """Refuse a request beyond ``most`` in flight in this process with a 503.

    Placed inside ``errors``, so the refusal is in the dialect's shape (Anthropic's
    ``overloaded_error`` is a 529), with ``Retry-After``. A streamed answer counts
    until its last byte is written.
    """
    in_flight = 0

    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal in_flight
        if request.path in UNCOUNTED_PATHS:
            return await handler(request)
        if in_flight >= most:
            raise ServiceUnavailable(
                "The gateway is handling as many requests as it accepts; retry shortly.",
                code="overloaded",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        in_flight += 1
        try:
            return await handler(request)
        finally:
            in_flight -= 1

    return limit


def front(
    most: int, rules: Mapping[AbstractRoute, KeyRule], dialects: Mapping[AbstractRoute, str]
) -> Middleware:
    """``request_id``, ``observe``, ``errors``, ``in_flight_limit(most)`` and
    ``credentials.middleware(rules)``, in that order, as one middleware; ``dialects``
    is each measured route's dialect (``observe`` reads ``DIALECTS`` by handler).

    The same work, in one coroutine frame per request instead of five (each layer of
    aiohttp's chain is a frame and a call more on every request). The application uses
    it when nothing goes between them (tracing goes after ``request_id``); the five
    stay for the other cases (the admin site, tests, tracing). The application also
    puts it around each route's handler itself (``wrap``), so that it has no aiohttp
    middleware at all.
    """
    in_flight = 0

    @web.middleware
    async def front(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal in_flight
        # request_id
        given = request.headers.get("X-Request-Id")
        rid = given if given and _CLIENT_ID.fullmatch(given) else "req_" + random_hex()
        request[REQUEST_ID] = rid
        request[ERROR] = None
        # observe
        route = request.match_info.route
        dialect = dialects.get(route)
        obs = None if dialect is None else metrics.begin(dialect)
        try:
            # errors
            try:
                # in_flight_limit
                counted = request.path not in UNCOUNTED_PATHS
                if counted:
                    if in_flight >= most:
                        raise ServiceUnavailable(
                            "The gateway is handling as many requests as it accepts; "
                            "retry shortly.",
                            code="overloaded",
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                        )
                    in_flight += 1
                try:
                    # credentials
                    rule = rules.get(route)
                    if rule is not None:
                        request[API_KEY] = await rule(request.app[GATEWAY].auth, request.headers)
                    response = await handler(request)
                finally:
                    if counted:
                        in_flight -= 1
            except GatewayError as exc:
                request[ERROR] = exc
                response = error_response(exc, request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                response = error_response(from_http(exc), request)
            except Exception:
                log.exception("unhandled error on request %s", request.get(REQUEST_ID, "-"))
                response = error_response(
                    GatewayError("The gateway failed to handle the request."), request
                )
        except BaseException as exc:
            if obs is not None:
                metrics.finish(obs, failed_status(exc))
                if not obs.backend:
                    _log_refused(request, obs, failed_status(exc))
            if isinstance(exc, web.HTTPException):
                exc.headers["X-Request-Id"] = rid
            raise
        if obs is not None:
            status = response.status
            error = request[ERROR]
            if status == 200 and error is not None:
                status = error.status
            metrics.finish(obs, status)
            if not obs.backend and status >= 400:
                _log_refused(request, obs, status)
        if not response.prepared:
            response.headers["X-Request-Id"] = rid
        return response

    return front


def wrap(middleware: Middleware, handler: Handler) -> Handler:
    """``handler`` behind ``middleware``, as a route's handler: what aiohttp's chain does
    on every request, done once. An application with any middleware also runs one of
    aiohttp's own (``_fix_request_current_app``, a frame more) and looks its chain up on
    each request; without any, ``Application._handle`` calls the route's handler."""
    return functools.partial(middleware, handler=handler)


async def unrouted(request: web.Request) -> web.StreamResponse:
    """The handler of a catch-all route, registered last: the 404, or the 405 of a path
    served for other methods, that aiohttp's router answers where no route matches, raised
    where a wrapped handler (``wrap``) turns it into the dialect's error."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        match, methods = await resource.resolve(request)
        if match is None:
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def error_response(error: GatewayError, request: web.Request) -> web.Response:
    rid = request.get(REQUEST_ID, "")
    headers = {"X-Request-Id": rid, **error.headers}
    if error.status in (400, 401, 402, 403, 404, 413):
        headers["x-should-retry"] = "false"  # the SDKs would otherwise retry some
    status, body = error_shape(request)(error, rid)
    response = web.Response(
        body=body,
        status=status,
        content_type="application/json",
        headers=headers,
    )
    if request.content.exception() is not None:
        # The body could not be read (e.g. a broken Content-Encoding): the rest of this
        # connection's bytes cannot be trusted, so close it instead of keeping it alive.
        response.force_close()
    return response


def from_http(exc: web.HTTPException) -> GatewayError:
    if exc.status == 413:
        return PayloadTooLarge("The request body is larger than this gateway accepts.")
    if exc.status == 404:
        return NotFound("Unknown endpoint.", code="unknown_url")
    return InvalidRequest(exc.reason, code=None, status=exc.status)
