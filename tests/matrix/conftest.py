"""The matrix's servers: one ``gateway serve`` for the session, and with
``GATEWAY_MATRIX=full`` (``make test-matrix``) the LiteLLM proxy as its upstream.

The gateway has its own Redis database (9) on the session's server, so other tests'
``flushdb`` never takes its keys. The LiteLLM proxy answers from its built-in mocks
(``mock_response``) and relays the tool and reasoning calls to the gateway's own
``echo`` routes (``openai/echo`` at the gateway), so a real third-party server's
Chat Completions output is what the gateway's ``openai_chat`` backend parses.
Installing it takes minutes (``bench/peers.py``, into ``.bench-peers/``): it is not
part of ``make test``, whose matrix cases run over the ``echo`` backend alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as sync_redis

from tests.conftest import free_port
from tests.matrix.cases import MOCK_TEXT, Case
from tests.matrix.python_clients import Profile

FULL = os.environ.get("GATEWAY_MATRIX") == "full"
ADMIN_TOKEN = "matrix-admin-token"
LITELLM_MASTER_KEY = "sk-matrix-litellm"
DB = 9


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ``GATEWAY_MATRIX=full``, leave out the cases over LiteLLM."""
    if FULL:
        return
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("case") if callspec else None
        (drop if isinstance(case, Case) and case.upstream == "litellm" else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _gateway_config(litellm_port: int | None) -> str:
    text = """
admin: {token_env: MATRIX_ADMIN_TOKEN}
backends:
  echo: {type: echo}
  thinker: {type: echo, reasoning: true}
"""
    if litellm_port is not None:
        text += f"""  litellm:
    type: openai_chat
    base_url: http://127.0.0.1:{litellm_port}/v1
    api_key_env: MATRIX_LITELLM_KEY
"""
    text += """routes:
  echo: {backend: echo, pricing: {input: 1, output: 2}}
  think: {backend: thinker, pricing: {input: 1, output: 2}}
"""
    if litellm_port is not None:
        for agent, model in (
            ("litellm-mock", "mock"),
            ("litellm-relay", "relay"),
            ("litellm-think", "relay-think"),
            ("litellm-limited", "limited"),
        ):
            pricing = "{input: 1, output: 2}"
            text += f"  {agent}: {{backend: litellm, model: {model}, pricing: {pricing}}}\n"
    return text


def _litellm_config(gateway_url: str, gateway_key: str) -> str:
    relay = f'api_base: "{gateway_url}/v1", api_key: "{gateway_key}"'
    mock = 'api_base: "http://127.0.0.1:9/v1", api_key: unused'
    return f"""model_list:
  - model_name: mock
    litellm_params: {{model: openai/mock, {mock}, mock_response: "{MOCK_TEXT}"}}
  - model_name: limited
    litellm_params: {{model: openai/mock, {mock}, mock_response: "litellm.RateLimitError"}}
  - model_name: relay
    litellm_params: {{model: openai/echo, {relay}}}
  - model_name: relay-think
    litellm_params: {{model: openai/think, {relay}}}
litellm_settings: {{num_retries: 0}}
general_settings: {{master_key: {LITELLM_MASTER_KEY}}}
"""


def _wait(url: str, proc: subprocess.Popen[bytes], within: float, log: Path) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url} exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {within} s:\n{log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _new_key(url: str, name: str) -> str:
    answer = httpx.post(
        f"{url}/admin/keys",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        json={"name": name, "balance": 10**12},
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


@pytest.fixture(scope="session")
def matrix(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Profile]:
    """The gateway the matrix drives (and LiteLLM behind it in full mode): its URL and keys."""
    tmp = tmp_path_factory.mktemp("matrix")
    store = redis_url.rsplit("/", 1)[0] + f"/{DB}"
    client = sync_redis.Redis.from_url(store)
    client.flushdb()
    client.close()
    litellm_port = free_port() if FULL else None
    config = tmp / "gateway.yaml"
    config.write_text(_gateway_config(litellm_port))
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_REDIS_URL": store,
        "MATRIX_ADMIN_TOKEN": ADMIN_TOKEN,
        "MATRIX_LITELLM_KEY": LITELLM_MASTER_KEY,
    }
    argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
    log = tmp / "gateway.log"
    procs: list[subprocess.Popen[bytes]] = []
    with log.open("wb") as out:
        gateway = subprocess.Popen(
            [*argv, "--port", str(port), "--log-level", "WARNING"],
            env=env,
            stdout=out,
            stderr=out,
        )
    procs.append(gateway)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{url}/readyz", gateway, 30, log)
        if litellm_port is not None:
            procs.append(_start_litellm(tmp, litellm_port, url, _new_key(url, "litellm-relay")))
        yield Profile(url, _new_key(url, "matrix"), "sk-gw-not-a-key-of-this-gateway")
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _start_litellm(
    tmp: Path, port: int, gateway_url: str, gateway_key: str
) -> subprocess.Popen[bytes]:
    from bench.peers import install_litellm

    exe = install_litellm()
    config = tmp / "litellm.yaml"
    config.write_text(_litellm_config(gateway_url, gateway_key))
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
    }
    log = tmp / "litellm.log"
    argv = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen([*argv, "--num_workers", "1"], env=env, stdout=out, stderr=out)
    _wait(f"http://127.0.0.1:{port}/health/liveliness", proc, 180, log)
    return proc
