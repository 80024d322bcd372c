"""Typed keys for application and request state."""

from __future__ import annotations

from aiohttp import web

from gateway.pipeline import Gateway

GATEWAY = web.AppKey("gateway", Gateway)
REQUEST_ID = web.RequestKey("request_id", str)  # set by the request-id middleware
