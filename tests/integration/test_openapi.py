"""``/openapi.json``: a valid OpenAPI 3.1 document describing exactly what is served."""

from __future__ import annotations

import re

import aiohttp
import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from gateway.server import admin, openapi, routes
from gateway.server.app import create_app
from tests.conftest import StartGateway, make_config

TOKEN = "admin-token-for-openapi-tests-0123"
ENV = "GW_TEST_ADMIN_TOKEN"
CONFIG = f"""
admin:
  token_env: {ENV}
backends:
  echo: {{type: echo}}
routes:
  echo:
    backend: echo
"""


async def test_the_document_is_valid_and_matches_the_router(
    start_gateway: StartGateway, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, TOKEN)
    gw = await start_gateway(CONFIG)
    async with http.get(gw.url + "/openapi.json") as r:
        assert r.status == 200 and r.content_type == "application/json"
        doc = await r.json()
    validate(doc)  # OpenAPI 3.1, with its JSON Schema dialect
    assert doc["openapi"] == "3.1.0"

    described = {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete", "patch")
    }
    assert served(CONFIG, described) == described
    # Without the admin API the application's own routes are the rest (its catch-all
    # route, which answers 404 and 405 in the dialect's shape, is no operation).
    no_admin = CONFIG.replace(f"admin:\n  token_env: {ENV}\n", "")
    assert served(no_admin, described) == {op for op in described if "/admin" not in op[1]}
    assert ("POST", "/admin/keys/{id}/rotate") in described
    assert ("GET", "/admin/audit") in described

    # Every reference resolves; every operation has an id, a summary and answers.
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for item in doc["paths"].values():
        for op in item.values():
            assert op["summary"] and op["responses"]


def served(config: str, described: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (method, path) operations that ``create_app`` routes for ``config``."""
    found = set()
    app = create_app(make_config(config))
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS", "*"):  # "*": the catch-all's 404 and 405
            continue
        path = re.sub(r"\{([^}:]+)(:[^}]*)?\}", r"{\1}", route.resource.canonical)
        if path == "/metrics":
            continue  # Prometheus'
        if path.startswith("/api/agents/v1") and (route.method, path) not in described:
            # an alias of /v1 (said in info.description), unless LibreChat's own path
            alias = "/v1" + path.removeprefix("/api/agents/v1")
            assert (route.method, alias) in described, path
            continue
        found.add((route.method, path))
    return found


def test_a_broken_document_is_refused_by_the_validator() -> None:
    doc = openapi.document([routes.V1, admin.ADMIN])
    validate(doc)
    doc["paths"]["/v1/models"]["get"]["parameters"] = [{"name": "x", "in": "nowhere"}]
    with pytest.raises(OpenAPIValidationError):
        validate(doc)


def test_without_an_admin_api_the_document_has_no_admin_paths() -> None:
    doc = openapi.document(routes.PUBLIC)
    validate(doc)
    assert not [p for p in doc["paths"] if p.startswith("/admin")]
    assert "/v1/chat/completions" in doc["paths"] and "/openapi.json" in doc["paths"]
