"""Typed keys for application and request state."""

from __future__ import annotations

from aiohttp import web

from gateway.pipeline import Gateway
from gateway.reload import ConfigWatcher

GATEWAY = web.AppKey("gateway", Gateway)
WATCHER = web.AppKey("watcher", ConfigWatcher)
REQUEST_ID = web.RequestKey("request_id", str)  # set by the request-id middleware
