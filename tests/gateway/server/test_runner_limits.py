"""``gateway.server.runner_limits``: the server-level limits aiohttp enforces, from ``limits:``."""

from __future__ import annotations

from gateway.config import parse_config
from gateway.server.runner_limits import runner_kwargs
from gateway.settings import Limits


def test_limits_are_configurable_with_defaults() -> None:
    assert Limits().max_json_depth == 64 and Limits().max_connections == 1024
    config = parse_config("limits: {max_tools: 3, max_headers: 50, keepalive_timeout: 5}")
    assert config.limits.max_tools == 3
    assert runner_kwargs(config.limits) == {
        "max_line_size": 8190,
        "max_field_size": 8190,
        "max_headers": 50,
        "keepalive_timeout": 5.0,
    }
