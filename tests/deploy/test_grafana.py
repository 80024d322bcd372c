"""deploy/grafana/agent-gateway.json: a Grafana dashboard whose every query parses as
PromQL and names only metrics and labels the gateway exports, and that shows them all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from prometheus_client.metrics import MetricWrapperBase

from gateway import metric_families, metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "agent-gateway.json"
# Grafana's variables, as Prometheus would see them once Grafana substituted them.
VARIABLES = {"$__rate_interval": "1m", "$__range": "6h", "$route": ".*"}


def exported() -> dict[str, set[str]]:
    """Every sample name the gateway exports, with the labels it carries."""
    out: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, metric_families.Family):  # the per-request ones
            name, labels, kind = value.name, set(value.labelnames), value.kind
        elif isinstance(value, MetricWrapperBase):
            name, labels, kind = value._name, set(value._labelnames), value._type
        else:
            continue
        if kind == "counter":
            out[f"{name}_total"] = labels
        elif kind == "histogram":
            out |= {f"{name}_sum": labels, f"{name}_count": labels}
            out[f"{name}_bucket"] = labels | {"le"}
        else:
            out[name] = labels
    return out


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> Iterator[str]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["definition"].removeprefix("label_values(").split(",")[0]


def substituted(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def test_it_is_a_dashboard_grafana_imports(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    (source,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert source["query"] == "prometheus"
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"] and panel["description"], panel["title"]


def test_every_query_is_promql_over_what_the_gateway_exports(dashboard: dict[str, Any]) -> None:
    known = exported()
    used: set[str] = set()
    for expr in queries(dashboard):
        tree = promql_parser.parse(substituted(expr))  # a ValueError names a syntax error
        selectors = nodes(tree, promql_parser.VectorSelector)
        labels: set[str] = set()
        for selector in selectors:
            assert selector.name in known, f"{selector.name}: not a metric the gateway exports"
            used.add(selector.name)
            labels |= known[selector.name]
            for matcher in selector.matchers.matchers:
                assert matcher.name in known[selector.name], f"{selector.name}: no {matcher.name}"
        for aggregate in nodes(tree, promql_parser.AggregateExpr):
            grouped = set(aggregate.modifier.labels) if aggregate.modifier else set()
            assert grouped <= labels, f"{expr}: groups by {grouped - labels}"
    shown = {name.removesuffix("_bucket") for name in used}
    wanted = {
        name.removesuffix("_bucket") for name in known if not name.endswith(("_sum", "_count"))
    }
    assert shown >= wanted, f"on no panel: {sorted(wanted - shown)}"


def nodes(tree: promql_parser.Expr, kind: type[Any]) -> list[Any]:
    found: list[Any] = []
    promql_parser.walk(tree, lambda node: found.append(node) if isinstance(node, kind) else None)
    return found


def test_a_query_naming_an_unknown_metric_fails() -> None:
    """The check above can fail."""
    with pytest.raises(ValueError):
        promql_parser.parse("sum by (status (rate(gateway_requests_total[1m]))")
    assert "gateway_request_total" not in exported()
