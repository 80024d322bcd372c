"""``/metrics``: the Prometheus text parser reads it, and it carries every family with
the right labels and values, in one process and summed over several (multiprocess mode).
And the logs: the per-request line, and no API key or upstream secret in any line."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import asyncio as aioredis

from gateway import apikeys
from gateway.logs import JsonFormatter, TextFormatter
from gateway.reload import ConfigWatcher
from gateway.store import Store
from tests.conftest import StartGateway, free_port
from tests.fakes.openai_upstream import FakeOpenAIUpstream, Script
from tests.integration import processes
from tests.integration.support import eventually

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

FAMILIES = (
    "gateway_requests",
    "gateway_request_duration_seconds",
    "gateway_time_to_first_token_seconds",
    "gateway_overhead_seconds",
    "gateway_tokens",
    "gateway_credits",
    "gateway_upstream_errors",
    "gateway_fallbacks",
    "gateway_open_streams",
    "gateway_config_reloads",
    "gateway_redis_errors",
)

USAGE = {
    "prompt_tokens": 11,
    "completion_tokens": 3,
    "total_tokens": 14,
    "prompt_tokens_details": {"cached_tokens": 4},
    "completion_tokens_details": {"reasoning_tokens": 1},
}


def parse(text: str) -> tuple[set[str], Samples]:
    """The family names and every sample, keyed by name and labels."""
    names, samples = set(), {}
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return names, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(http: aiohttp.ClientSession, url: str) -> tuple[set[str], Samples]:
    async with http.get(f"{url}/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        return parse(await r.text())


def config(up: FakeOpenAIUpstream, down: FakeOpenAIUpstream) -> str:
    return f"""
backends:
  up: {{type: openai_chat, base_url: {up.base_url}}}
  down: {{type: openai_chat, base_url: {down.base_url}}}
routes:
  mx-chat: {{backend: up, pricing: {{input: 2, output: 10}}}}
  mx-fallback:
    pricing: {{input: 1, output: 1}}
    backends: [{{backend: down}}, {{backend: up}}]
"""


@pytest.fixture
async def upstreams() -> AsyncIterator[tuple[FakeOpenAIUpstream, FakeOpenAIUpstream]]:
    up, down = await FakeOpenAIUpstream().start(), await FakeOpenAIUpstream().start()
    up.script = Script(usage=USAGE)
    down.script = Script(status=503)
    yield up, down
    await up.close()
    await down.close()


async def test_metrics_after_requests_fallback_and_reload(
    start_gateway: StartGateway,
    upstreams: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream],
    tmp_path: Path,
) -> None:
    up, down = upstreams
    text = config(up, down)
    gw = await start_gateway(text)
    secret = await gw.new_key(balance=10_000_000)
    auth = {"Authorization": f"Bearer {secret}"}
    messages = [{"role": "user", "content": "hi"}]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        _, before = await scrape(http, gw.url)
        chat = f"{gw.url}/v1/chat/completions"
        async with http.post(
            chat, json={"model": "mx-chat", "messages": messages}, headers=auth
        ) as r:
            assert r.status == 200
        body = {"model": "mx-chat", "messages": messages, "stream": True}
        async with http.post(chat, json=body, headers=auth) as r:
            assert r.status == 200 and (await r.read()).endswith(b"[DONE]\n\n")
        body = {"model": "mx-chat", "input": "hi", "store": False}
        async with http.post(f"{gw.url}/v1/responses", json=body, headers=auth) as r:
            assert r.status == 200
        body = {"model": "mx-fallback", "messages": messages}
        async with http.post(chat, json=body, headers=auth) as r:
            assert r.status == 200
        body = {"model": "mx-chat", "messages": messages}
        async with http.post(chat, json=body, headers={"Authorization": "Bearer sk-wrong"}) as r:
            assert r.status == 401
        body = {"model": "no-such-agent-xyz", "messages": messages}
        async with http.post(chat, json=body, headers=auth) as r:
            assert r.status == 404

        path = tmp_path / "gateway.yaml"
        path.write_text(text)
        watcher = ConfigWatcher(gw.gateway, str(path))
        path.write_text(text + "\n# changed\n")
        assert await watcher.check()
        path.write_text("routes: [not a mapping\n")
        assert not await watcher.check()

        async def settled() -> tuple[set[str], Samples] | None:
            names, samples = await scrape(http, gw.url)
            done = value(samples, "gateway_credits_total", route="mx-fallback") > 0
            counted = value(
                samples, "gateway_requests_total",
                route="mx-fallback", backend="up", dialect="chat_completions", status="200",
            )  # fmt: skip
            return (names, samples) if done and counted else None

        names, after = await eventually(settled)

    assert set(FAMILIES) <= names
    requests = "gateway_requests_total"
    chat_ok = {"route": "mx-chat", "backend": "up", "dialect": "chat_completions", "status": "200"}
    assert value(after, requests, **chat_ok) == 2
    assert value(after, requests, **(chat_ok | {"dialect": "responses"})) == 1
    refused = {"route": "", "backend": "", "dialect": "chat_completions"}
    assert (
        value(after, requests, **refused, status="401")
        - value(before, requests, **refused, status="401")
        == 1
    )  # the client's unknown model never becomes a label:
    assert not [k for k in after if ("route", "no-such-agent-xyz") in k[1]]
    assert value(after, requests, **refused, status="404") >= 1

    duration = "gateway_request_duration_seconds_count"
    assert value(after, duration, route="mx-chat", dialect="chat_completions") == 2
    inf = {"route": "mx-chat", "dialect": "responses", "le": "+Inf"}
    assert value(after, "gateway_request_duration_seconds_bucket", **inf) == 1
    ttft = "gateway_time_to_first_token_seconds_count"
    assert value(after, ttft, route="mx-chat", backend="up") == 3
    assert value(after, ttft, route="mx-fallback", backend="up") == 1
    assert value(after, ttft, route="mx-fallback", backend="down") == 0
    overhead = "gateway_overhead_seconds"
    chat_overhead = value(after, f"{overhead}_count", dialect="chat_completions") - value(
        before, f"{overhead}_count", dialect="chat_completions"
    )
    assert chat_overhead == 5  # 2 + 1 fallback + 401 + 404
    total = value(
        after, "gateway_request_duration_seconds_sum", route="mx-chat", dialect="responses"
    )
    own = value(after, f"{overhead}_sum", dialect="responses") - value(
        before, f"{overhead}_sum", dialect="responses"
    )
    assert 0 < own < total  # the wait on the upstream is not the gateway's own time

    tokens = "gateway_tokens_total"
    assert value(after, tokens, route="mx-chat", kind="input") == 33
    assert value(after, tokens, route="mx-chat", kind="output") == 9
    assert value(after, tokens, route="mx-chat", kind="cached_input") == 12
    assert value(after, tokens, route="mx-chat", kind="reasoning") == 3
    assert value(after, "gateway_credits_total", route="mx-chat") == 3 * (11 * 2 + 3 * 10)
    assert value(after, "gateway_credits_total", route="mx-fallback") == 11 + 3

    errors = {
        dict(labels)["kind"]: v
        for (name, labels), v in after.items()
        if name == "gateway_upstream_errors_total" and ("backend", "down") in labels
    }
    assert errors == {"upstream_error": 1}  # the 503, once; the fallback answered
    assert value(after, "gateway_fallbacks_total", route="mx-fallback", from_backend="down") == 1
    assert value(after, "gateway_open_streams") == 0
    for outcome in ("applied", "rejected"):
        name = "gateway_config_reloads_total"
        assert value(after, name, outcome=outcome) - value(before, name, outcome=outcome) == 1


async def test_redis_errors_are_counted(start_gateway: StartGateway) -> None:
    gw = await start_gateway(redis=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    name, labels = "gateway_redis_errors_total", {"error": "ConnectionError"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        _, before = await scrape(http, gw.url)
        body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {apikeys.new_secret()}"}  # looked up in the store
        async with http.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers) as r:
            assert r.status == 503
        _, after = await scrape(http, gw.url)
    assert value(after, name, **labels) > value(before, name, **labels)


# Multiprocess mode: two real processes writing to one PROMETHEUS_MULTIPROC_DIR.

MP_CONFIG = """
backends:
  echo: {type: echo}
routes:
  mp-echo: {backend: echo, pricing: {input: 1, output: 2}}
"""


async def serve(path: Path, redis_url: str, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    process = await processes.serve(path, redis_url, {"PROMETHEUS_MULTIPROC_DIR": str(folder)})
    return process.proc, process.url


async def test_multiprocess_metrics_are_summed_over_processes(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(MP_CONFIG)
    folder = tmp_path / "prometheus"
    folder.mkdir()
    _, secret = await Store(redis_client).create_key("mp", balance=10_000_000)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        (a, url_a), (b, url_b) = [await serve(path, redis_url, folder) for _ in range(2)]
        procs += [a, b]
        body = {"model": "mp-echo", "messages": [{"role": "user", "content": "one two"}]}
        headers = {"Authorization": f"Bearer {secret}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            for url, count in ((url_a, 3), (url_b, 4)):
                for n in range(count):
                    stream = {**body, "stream": n % 2 == 0}
                    async with http.post(
                        f"{url}/v1/chat/completions", json=stream, headers=headers
                    ) as r:
                        assert r.status == 200
                        await r.read()
            labels = {"route": "mp-echo", "backend": "echo", "dialect": "chat_completions"}

            async def summed() -> tuple[set[str], Samples] | None:
                names, samples = await scrape(http, url_a)
                ok = value(samples, "gateway_requests_total", **labels, status="200") == 7
                return (names, samples) if ok else None

            names, samples = await eventually(summed)
            unused = {"gateway_redis_errors", "gateway_config_reloads", "gateway_fallbacks"}
            assert set(FAMILIES) - unused - {"gateway_upstream_errors"} <= names
            assert parse_b_equal(samples, (await scrape(http, url_b))[1])
            assert value(samples, "gateway_credits_total", route="mp-echo") > 0
            assert value(samples, "gateway_open_streams") == 0
            ttft = "gateway_time_to_first_token_seconds_count"
            assert value(samples, ttft, route="mp-echo", backend="echo") == 7
        assert any(f.name.startswith("counter_") for f in folder.iterdir())
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            await asyncio.to_thread(proc.wait, 15)


def parse_b_equal(a: Samples, b: Samples) -> bool:
    """Either process answers the same sums for the requests counter."""
    name = "gateway_requests_total"
    return {k: v for k, v in a.items() if k[0] == name} == {
        k: v for k, v in b.items() if k[0] == name
    }


# Logs: the per-request line, and no secret in any line.

UPSTREAM_SECRET = "sk-upstream-secret-4242-from-env"


async def test_no_key_or_upstream_secret_reaches_a_log_line(
    start_gateway: StartGateway,
    upstreams: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    up, down = upstreams
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", UPSTREAM_SECRET)
    gw = await start_gateway(f"""
backends:
  up: {{type: openai_chat, base_url: {up.base_url}, api_key_env: FAKE_UPSTREAM_KEY}}
  down: {{type: openai_chat, base_url: {down.base_url}, api_key_env: FAKE_UPSTREAM_KEY}}
routes:
  lg-up: {{backend: up, pricing: {{input: 2, output: 10}}}}
  lg-down: {{backend: down}}
filters:
  - type: request_log
""")
    secret = await gw.new_key()
    wrong = apikeys.new_secret()
    # An upstream that quotes the credential it was sent back in its error, as some do.
    down.script = Script(
        status=401, error_body=f'{{"error": "bad key {UPSTREAM_SECRET}"}}'.encode()
    )
    chat = f"{gw.url}/v1/chat/completions"
    messages = [{"role": "user", "content": "hi"}]
    answers: list[bytes] = []
    with caplog.at_level(logging.DEBUG):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            for agent, key, stream in (
                ("lg-up", secret, False),
                ("lg-up", secret, True),
                ("lg-down", secret, False),
                ("lg-up", wrong, False),
                ("lg-up", "sk-" + secret, False),
            ):
                body = {"model": agent, "messages": messages, "stream": stream}
                headers = {"Authorization": f"Bearer {key}", "x-api-key": key}
                async with http.post(chat, json=body, headers=headers) as r:
                    answers.append(await r.read())
            await asyncio.sleep(0.1)  # settlement and the last log lines
    assert up.last.headers["Authorization"] == f"Bearer {UPSTREAM_SECRET}"  # it was in play
    assert b"[redacted]" in answers[2] and UPSTREAM_SECRET.encode() not in answers[2]
    lines = [f.format(r) for r in caplog.records for f in (JsonFormatter(), TextFormatter())]
    requests = [r for r in caplog.records if r.name == "gateway.requests"]
    # Three ran (completed, completed, failed), two were refused (401) before any backend.
    assert [r.getMessage() for r in requests] == [
        "request completed",
        "request completed",
        "request failed",
        "request refused",
        "request refused",
    ]
    line = json.loads(JsonFormatter().format(requests[0]))
    key = await gw.key_of(secret)
    assert (line["message"], line["key_id"], line["agent"]) == (
        "request completed",
        key.id,
        "lg-up",
    )
    assert (line["input_tokens"], line["output_tokens"], line["credits"]) == (11, 3, 52)
    assert line["backend"] == "up" and line["duration_ms"] >= line["first_event_ms"] >= 0
    for text in lines:
        for leaked in (secret, wrong, UPSTREAM_SECRET, secret[8:], UPSTREAM_SECRET[8:]):
            assert leaked not in text, text
