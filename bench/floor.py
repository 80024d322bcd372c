"""The floor: a bare aiohttp proxy, the gateway's HTTP stack with none of its work.

``python -m bench.floor --port P --upstream URL`` forwards ``POST
/v1/chat/completions`` to ``URL`` through one pooled aiohttp client and copies the
answer back as it comes, byte for byte: no key, no Redis, no parsing, no
metering, no rendering. The gateway runs on the same server, client and event
loop, so what it costs beyond this floor is its own work; ``bench --peers``
measures both in one run.

With ``--redis URL`` each request first makes one Redis round trip (an ``INCR``,
through the gateway's own pipeliner) before it is forwarded: the least any design
that admits a request in Redis before calling its upstream adds to a request's
latency. ``bench --peers`` runs it as the peer ``floor+redis``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import aiohttp
import uvloop
from aiohttp import web

if TYPE_CHECKING:  # imported at run time only with ``--redis`` (the floor's footprint)
    from redis import asyncio as aioredis

    from gateway.store.pipelining import Pipeliner

COUNTER = "bench:floor:requests"  # what ``--redis`` increments, once a request


def make_app(upstream: str, redis_url: str | None = None) -> web.Application:
    app = web.Application()
    session: aiohttp.ClientSession | None = None
    redis: aioredis.Redis | None = None
    pipeliner: Pipeliner | None = None

    async def forward(request: web.Request) -> web.StreamResponse:
        nonlocal session, redis, pipeliner
        if session is None:
            session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
            if redis_url is not None:
                # Imported here: the plain floor keeps its footprint (idle RSS) without them.
                from redis import asyncio as aioredis

                from gateway.store.pipelining import Pipeliner

                redis = aioredis.Redis.from_url(redis_url)
                pipeliner = Pipeliner(redis)
        body = await request.read()
        if pipeliner is not None:
            await pipeliner.run([("INCR", COUNTER)])
        headers = {"Content-Type": "application/json"}
        async with session.post(upstream, data=body, headers=headers) as answer:
            content_type = answer.headers.get("Content-Type", "application/json")
            if not content_type.startswith("text/event-stream"):
                return web.Response(
                    body=await answer.read(), status=answer.status, content_type=content_type
                )
            response = web.StreamResponse(status=answer.status)
            response.content_type = "text/event-stream"
            await response.prepare(request)
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def close(_: web.Application) -> None:
        if session is not None:
            await session.close()
        if redis is not None:
            await redis.aclose()

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    app.router.add_post("/v1/chat/completions", forward)
    app.router.add_get("/v1/models", ready)
    app.on_cleanup.append(close)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--redis", help="one Redis round trip a request first (a URL)")
    args = parser.parse_args()
    web.run_app(
        make_app(args.upstream, args.redis),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
