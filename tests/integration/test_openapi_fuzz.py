"""schemathesis against a live gateway, driven by the gateway's own ``/openapi.json``.

Every operation, public and admin, gets a bounded number of generated requests
(valid ones, then invalid ones) with the right credentials; each answer must not
be a 5xx and must conform to the description: a documented status code, a
documented content type, and a body matching the documented schema. Hypothesis
runs derandomized, so a run is repeatable; the whole test takes seconds.
"""

from __future__ import annotations

import asyncio
import copy
import time
import traceback
from typing import Any

import aiohttp
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import RunningGateway, StartGateway

TOKEN = "admin-token-for-the-fuzzer-0123456789"
ENV = "GW_TEST_ADMIN_TOKEN"
CONFIG = f"""
admin:
  token_env: {ENV}
backends:
  echo: {{type: echo}}
routes:
  echo:
    backend: echo
    pricing: {{input: 1, output: 2}}
    max_output_tokens: 20
"""
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 10}
BUDGET_SECONDS = 60
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def fuzz(doc: dict[str, Any], base_url: str, api_key: str) -> dict[str, int]:
    """Run every operation's examples; the number of requests per operation."""
    schema = schemathesis.openapi.from_dict(doc)
    counts: dict[str, int] = {}
    started = time.monotonic()
    with requests.Session() as session:  # closed even when a check fails
        for result in schema.get_all_operations():
            operation = result.ok()
            secret = TOKEN if operation.path.startswith("/admin") else api_key
            headers = {"Authorization": f"Bearer {secret}"}
            label = f"{operation.method.upper()} {operation.path}"
            counts[label] = 0
            for mode, examples in EXAMPLES.items():
                run = _runner(operation, mode, examples, counts, label, base_url, session, headers)
                try:
                    run()
                except Unsatisfiable:
                    # Nothing to make invalid: no parameters and no body (GET /healthz...).
                    assert mode == GenerationMode.NEGATIVE, label
            assert time.monotonic() - started < BUDGET_SECONDS, "the fuzzer ran out of time"
    return counts


def _runner(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    counts: dict[str, int],
    label: str,
    base_url: str,
    session: requests.Session,
    headers: dict[str, str],
) -> Any:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    def run(case: schemathesis.Case) -> None:
        counts[label] += 1
        case.call_and_validate(base_url=base_url, session=session, headers=headers, checks=CHECKS)

    return run


# schemathesis's negative-data strategies draw from `random` (a deprecation, not a failure).
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
async def test_the_gateway_conforms_to_its_description_under_fuzzing(
    start_gateway: StartGateway, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, TOKEN)
    gw: RunningGateway = await start_gateway(CONFIG)
    api_key = await gw.new_key(balance=10**12)
    async with http.get(gw.url + "/openapi.json") as r:
        doc = await r.json()
    # The gateway serves on this loop; the fuzzer's blocking client runs in a thread.
    counts = await asyncio.to_thread(fuzz, doc, gw.url, api_key)
    assert len(counts) == sum(len(item) for item in doc["paths"].values())
    assert all(n >= 1 for n in counts.values()), counts
    assert sum(counts.values()) >= 20 * len(counts), counts

    # The harness does catch a violation: a description the gateway does not meet.
    broken = copy.deepcopy(doc)
    models = broken["paths"]["/v1/models"]["get"]["responses"]
    models["200"]["content"]["application/json"]["schema"] = {"required": ["not-there"]}
    broken["paths"] = {"/v1/models": broken["paths"]["/v1/models"]}
    with pytest.raises(BaseException) as raised:  # a group of check failures
        await asyncio.to_thread(fuzz, broken, gw.url, api_key)
    assert "not-there" in "".join(traceback.format_exception(raised.value))
    async with http.get(gw.url + "/healthz") as r:
        assert r.status == 200  # and it is still up
