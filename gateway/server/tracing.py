"""Optional OpenTelemetry traces: one span per agent request, off unless configured.

``tracing.exporter`` in gateway.yaml: ``none`` (the default: nothing is loaded),
``console`` (spans printed to stdout, for trying it out) or ``otlp`` (sent to an
OpenTelemetry collector at ``tracing.endpoint``). The OpenTelemetry SDK (and, for
``otlp``, its HTTP exporter) is an optional extra: ``pip install
'agent-gateway[otel]'``. A span carries the request id, dialect, agent, backend
and HTTP status (499 when the client left); it is an error span when the status
is 5xx. The gateway keeps its own tracer provider and never replaces the global one.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway import metrics
from gateway.errors import ConfigError, Problem
from gateway.server.keys import REQUEST_ID, app_value
from gateway.server.middlewares import DIALECTS, failed_status
from gateway.settings import TracingSettings


def tracer(settings: TracingSettings, exporter: Any = None) -> Any | None:
    """A tracer for ``settings`` (``None`` when tracing is off); ``exporter`` is for tests."""
    if settings.exporter == "none" and exporter is None:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError as exc:
        raise ConfigError([_missing("the OpenTelemetry SDK", exc)]) from exc
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigError([_missing("the OTLP exporter", exc)]) from exc
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.endpoint))
        )
    return provider.get_tracer("agent-gateway")


def _missing(what: str, exc: ImportError) -> Problem:
    return Problem(
        "tracing.exporter",
        f"{what} is not installed ({exc.name}): pip install 'agent-gateway[otel]'",
    )


def middleware(tracer: Any) -> Middleware:
    """Wrap each agent request (those ``gateway.metrics`` observes) in a span."""
    from opentelemetry.trace import SpanKind, Status, StatusCode

    error = Status(StatusCode.ERROR)

    @web.middleware
    async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.route.handler not in (app_value(request, DIALECTS) or {}):
            return await handler(request)  # probes, metrics, admin: no span
        resource = request.match_info.route.resource
        name = f"{request.method} {resource.canonical if resource else request.path}"
        with tracer.start_as_current_span(name, kind=SpanKind.SERVER) as span:
            try:
                response = await handler(request)
            except BaseException as exc:
                describe(span, request, failed_status(exc))
                raise
            describe(span, request, response.status)
            return response

    def describe(span: Any, request: web.Request, status: int) -> None:
        obs = metrics.observation()
        span.set_attribute("http.request.method", request.method)
        span.set_attribute("url.path", request.path)
        span.set_attribute("http.response.status_code", status)
        for attribute, value in (
            ("gateway.request_id", request.get(REQUEST_ID, "")),
            ("gateway.dialect", obs.dialect),
            ("gateway.agent", obs.route),
            ("gateway.backend", obs.backend),
        ):
            if value:
                span.set_attribute(attribute, value)
        if status >= 500:
            span.set_status(error)

    return traced
