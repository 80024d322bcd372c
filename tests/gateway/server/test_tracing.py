"""OpenTelemetry traces: one span per agent request, off by default."""

from __future__ import annotations

from dataclasses import replace

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.server import tracing
from gateway.server.app import create_app
from gateway.server.keys import GATEWAY
from gateway.settings import TracingSettings
from tests.conftest import free_port, make_config


def test_off_by_default() -> None:
    assert parse_config("").tracing == TracingSettings()
    assert tracing.tracer(TracingSettings()) is None
    with pytest.raises(ConfigError) as caught:
        parse_config("tracing: {exporter: jaeger}\n", "g.yaml")
    assert caught.value.problems[0].path == "tracing.exporter"


def test_console_exporter_builds_a_tracer() -> None:
    assert tracing.tracer(TracingSettings(exporter="console")) is not None


async def test_a_span_per_agent_request(redis_url: str, redis_client: object) -> None:
    exporter = InMemorySpanExporter()
    app = create_app(make_config(redis_url=redis_url), span_exporter=exporter)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        _, secret = await app[GATEWAY].store.create_key("t", balance=100_000)
        body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {secret}", "X-Request-Id": "trace-me"}
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}"
            async with http.post(f"{url}/v1/chat/completions", json=body, headers=headers) as r:
                assert r.status == 200
            async with http.post(f"{url}/v1/chat/completions", json=body) as r:
                assert r.status == 401
            async with http.get(f"{url}/healthz") as r:
                assert r.status == 200
    finally:
        await runner.cleanup()
    spans = exporter.get_finished_spans()
    assert len(spans) == 2  # agent requests only, not the probe
    ok, refused = sorted(spans, key=lambda s: s.attributes["http.response.status_code"])
    assert ok.name == "POST /v1/chat/completions"
    assert ok.attributes["gateway.request_id"] == "trace-me"
    assert ok.attributes["gateway.agent"] == "echo" and ok.attributes["gateway.backend"] == "echo"
    assert ok.attributes["gateway.dialect"] == "chat_completions"
    assert refused.attributes["http.response.status_code"] == 401
    assert str(refused.attributes["gateway.request_id"]).startswith("req_")  # the one made
    assert secret not in str([dict(s.attributes or {}) for s in spans])


def test_tracing_needs_a_restart() -> None:
    from gateway.reload import RESTART_ONLY

    assert "tracing" in RESTART_ONLY
    config = make_config()
    assert replace(config.tracing, exporter="console").exporter == "console"
