"""The admin API's aggregates: credits, requests, errors and tokens by hour or day, by
agent, for the gateway (with its top keys) or one key. Read from the counters
settlement keeps (``gateway.store.aggregates``), never from a ledger."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from gateway.errors import InvalidRequest
from gateway.server.admin.request import gateway_of
from gateway.server.body import json_response, whole_number
from gateway.store import aggregates


def aggregate_query(params: Mapping[str, str]) -> tuple[aggregates.Period, int]:
    """``period`` (``hour`` or ``day``, the default) and ``count`` of buckets, checked."""
    period = params.get("period", "day")
    if period not in aggregates.PERIODS:
        raise InvalidRequest("period must be hour or day", param="period")
    most = aggregates.MAX_BUCKETS[period]
    default = "48" if period == "hour" else "30"
    count = whole_number(params.get("count", default))
    if count is None or not 1 <= count <= most:
        raise InvalidRequest(f"count must be a whole number from 1 to {most}", param="count")
    return period, count


async def gateway_aggregates(request: web.Request) -> web.Response:
    period, count = aggregate_query(request.query)
    gateway = gateway_of(request)
    await gateway.holds.totals.flush()  # this process's are current; others' within a second
    found = await aggregates.read(gateway.store.redis, None, period, count)
    return json_response(found.to_json())


async def key_aggregates(request: web.Request) -> web.Response:
    period, count = aggregate_query(request.query)
    store = gateway_of(request).store
    key = await store.get_key(request.match_info["id"])
    found = await aggregates.read_key(store.redis, key, period, count)
    return json_response(found.to_json())
