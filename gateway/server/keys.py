"""Typed keys for application and request state."""

from __future__ import annotations

from aiohttp import web

from gateway.pipeline import Gateway
from gateway.reload import ConfigWatcher
from gateway.store import ApiKey

GATEWAY = web.AppKey("gateway", Gateway)
WATCHER = web.AppKey("watcher", ConfigWatcher)
REQUEST_ID = web.RequestKey("request_id", str)  # set by the request-id middleware
API_KEY = web.RequestKey("api_key", ApiKey)  # set by the authentication middleware (credentials)
