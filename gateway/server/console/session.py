"""Console sessions: sign-in with the admin token, a session cookie, CSRF, and the
security headers of every console response.

Signing in with the admin token (compared as the admin API compares it) makes a
random session id, sent as an ``HttpOnly; SameSite=Strict`` cookie scoped to
``/console`` and stored in Redis only as its SHA-256, with a CSRF token and a fixed
lifetime (``SESSION_SECONDS``), so every worker knows it and it expires on its own.
The token itself is never stored, put in a URL or logged. Every change (a POST,
PUT or DELETE) needs the session's CSRF token (form field ``csrf`` or header
``X-CSRF-Token``), and an ``Origin``, when the browser sends one, of this site.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import AuthenticationFailed, GatewayError, PermissionDenied
from gateway.server import middlewares
from gateway.server.admin.request import ACTOR_KIND, gateway_of
from gateway.server.admin.token import ADMIN_TOKEN_DIGEST, digest
from gateway.store import schema
from gateway.store.store import guard

COOKIE = "gw_console"
SESSION_SECONDS = 8 * 3600
CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Only this site's script and style; nothing framed, embedded, or sent elsewhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make a form's Origin "null"
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
PUBLIC_PATHS = frozenset({"/console/login"})  # and /console/static/...
MAX_FAILED_SIGN_INS = 10  # from one address, within FAILED_SIGN_IN_SECONDS
FAILED_SIGN_IN_SECONDS = 300


@dataclass(frozen=True, slots=True)
class Session:
    csrf: str


SESSION = web.RequestKey("console_session", Session)


def _bytes(text: str) -> bytes:
    """Header text as the bytes sent (aiohttp decodes them with surrogateescape)."""
    return text.encode("utf-8", "surrogateescape")


def _stored(session_id: str) -> str:
    return schema.console_session(hashlib.sha256(_bytes(session_id)).hexdigest())


def token_matches(request: web.Request, token: str) -> bool:
    """Whether ``token`` is the admin token, in constant time."""
    return hmac.compare_digest(digest(token.strip()), request.app[ADMIN_TOKEN_DIGEST])


async def refused_for(request: web.Request) -> int:
    """Seconds this client must wait before signing in again (0: it may now): after
    ``MAX_FAILED_SIGN_INS`` wrong tokens, until the oldest of them is forgotten."""
    redis = gateway_of(request).store.redis
    name = schema.console_sign_ins(request.remote or "unknown")
    async with guard():
        failed = int(await redis.get(name) or 0)
        if failed < MAX_FAILED_SIGN_INS:
            return 0
        return max(1, int(await redis.ttl(name)))


async def failed(request: web.Request) -> None:
    """Count a wrong token from this client."""
    redis = gateway_of(request).store.redis
    name = schema.console_sign_ins(request.remote or "unknown")
    async with guard():
        if await redis.incr(name) == 1:
            await redis.expire(name, FAILED_SIGN_IN_SECONDS)


async def begin(request: web.Request, response: web.StreamResponse) -> None:
    """Start a session: stored in Redis, its id set as the response's cookie."""
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    async with guard():
        await gateway_of(request).store.redis.set(_stored(session_id), csrf, ex=SESSION_SECONDS)
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=SESSION_SECONDS,
        path="/console",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


async def end(request: web.Request, response: web.StreamResponse) -> None:
    """End the request's session (if any) and clear its cookie."""
    session_id = request.cookies.get(COOKIE)
    if session_id:
        async with guard():
            await gateway_of(request).store.redis.delete(_stored(session_id))
    response.del_cookie(COOKIE, path="/console")


async def current(request: web.Request) -> Session | None:
    session_id = request.cookies.get(COOKIE)
    if not session_id or len(session_id) > 100:
        return None
    async with guard():
        csrf = await gateway_of(request).store.redis.get(_stored(session_id))
    return Session(cast(str, csrf)) if csrf else None


def session_of(request: web.Request) -> Session:
    return request[SESSION]


def _same_origin(request: web.Request) -> bool:
    """No ``Origin`` (an older browser, a tool), or this site's host. The scheme is not
    compared: behind a proxy that ends TLS this listener sees http."""
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


@web.middleware
async def security(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The headers of every console response, errors and redirects included."""
    try:
        response = await handler(request)
    except GatewayError as exc:
        response = middlewares.error_response(exc, request)
    except web.HTTPException as exc:
        if exc.status < 400:
            exc.headers.update(SECURITY_HEADERS)
            raise
        response = middlewares.error_response(middlewares.from_http(exc), request)
    response.headers.update(SECURITY_HEADERS)
    return response


@web.middleware
async def require_session(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Pages redirect to sign-in without a session, the JSON API answers 401; a change
    needs the session's CSRF token and a same-site origin."""
    path = request.path
    if path in PUBLIC_PATHS or path.startswith("/console/static/"):
        if request.method in CHANGES and not _same_origin(request):
            raise PermissionDenied("cross-site request refused", code="csrf_failed")
        return await handler(request)
    session = await current(request)
    if session is None:
        if path.startswith("/console/api/"):
            raise AuthenticationFailed("sign in to the console", code="console_session_required")
        raise web.HTTPSeeOther("/console/login")
    if request.method in CHANGES:
        given = request.headers.get("X-CSRF-Token", "")
        if not given and request.content_type == "application/x-www-form-urlencoded":
            given = str((await request.post()).get("csrf", ""))
        valid = given and hmac.compare_digest(_bytes(given), _bytes(session.csrf))
        if not valid or not _same_origin(request):
            raise PermissionDenied(
                "the console's CSRF token is missing or wrong: reload the page",
                code="csrf_failed",
            )
    request[SESSION] = session
    request[ACTOR_KIND] = "console"  # the audit log names the console, not the API
    return await handler(request)
