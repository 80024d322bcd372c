"""Every refusal and failure: the right status, the OpenAI error shape, never a 500."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import ECHO_CONFIG, StartGateway, free_port
from tests.fakes.openai_upstream import FakeOpenAIUpstream, Script
from tests.integration.conftest import MakeClient
from tests.integration.support import upstream_config

HELLO: Any = [{"role": "user", "content": "hello"}]


def assert_error_shape(body: object, type_: str | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``; the inner object."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict)
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    if type_ is not None:
        assert error["type"] == type_
    return error


def sdk_error(exc: openai.APIStatusError, type_: str | None = None) -> dict[str, Any]:
    """The error object of an SDK exception, checked against the OpenAI shape."""
    return assert_error_shape(exc.response.json(), type_)


# Authentication and authorization


async def test_missing_key_is_401(start_gateway: StartGateway, http: aiohttp.ClientSession) -> None:
    gw = await start_gateway()
    body = {"model": "echo", "messages": HELLO}
    async with http.post(f"{gw.url}/v1/chat/completions", json=body) as resp:
        assert resp.status == 401
        assert resp.headers["X-Request-Id"]
        assert_error_shape(await resp.json(), "authentication_error")
    async with http.get(f"{gw.url}/v1/models") as resp:
        assert resp.status == 401
        assert_error_shape(await resp.json(), "authentication_error")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "sk-gw-nobearer"])
async def test_malformed_authorization_is_401(
    start_gateway: StartGateway, http: aiohttp.ClientSession, header: str
) -> None:
    gw = await start_gateway()
    async with http.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": "echo", "messages": HELLO},
        headers={"Authorization": header},
    ) as resp:
        assert resp.status == 401
        assert_error_shape(await resp.json(), "authentication_error")


async def test_invalid_key_is_401(start_gateway: StartGateway, sdk: MakeClient) -> None:
    gw = await start_gateway()
    client = sdk(gw, "sk-gw-" + "x" * 43)
    with pytest.raises(openai.AuthenticationError) as caught:
        await client.chat.completions.create(model="echo", messages=HELLO)
    assert caught.value.status_code == 401
    sdk_error(caught.value, "authentication_error")
    with pytest.raises(openai.AuthenticationError):
        await client.models.list()


async def test_key_restricted_to_another_agent_is_403(
    start_gateway: StartGateway, sdk: MakeClient
) -> None:
    gw = await start_gateway()
    client = sdk(gw, await gw.new_key(agents=("free",)))
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await client.chat.completions.create(model="echo", messages=HELLO)
    assert caught.value.status_code == 403
    error = sdk_error(caught.value, "permission_error")
    assert error["param"] == "model"
    ok = await client.chat.completions.create(model="free", messages=HELLO)
    assert ok.choices[0].message.content == "hello"


async def test_unknown_agent_is_404(start_gateway: StartGateway, sdk: MakeClient) -> None:
    gw = await start_gateway()
    client = sdk(gw, await gw.new_key())
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(
                model="no-such-agent", messages=HELLO, stream=stream
            )
        assert caught.value.status_code == 404
        error = sdk_error(caught.value, "not_found_error")
        assert error["param"] == "model"
        assert error["code"] == "model_not_found"


async def test_unknown_endpoint_and_method(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway()
    async with http.get(f"{gw.url}/v1/nothing-here") as resp:
        assert resp.status == 404
        assert_error_shape(await resp.json())
    async with http.get(f"{gw.url}/v1/chat/completions") as resp:
        assert resp.status == 405
        assert_error_shape(await resp.json())


# Bad requests


async def test_invalid_fields_name_the_param(start_gateway: StartGateway, sdk: MakeClient) -> None:
    gw = await start_gateway()
    client = sdk(gw, await gw.new_key())
    cases: list[tuple[dict[str, Any], str]] = [
        ({"messages": HELLO, "temperature": 5}, "temperature"),
        ({"messages": HELLO, "top_p": "high"}, "top_p"),
        ({"messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"messages": HELLO, "max_completion_tokens": "many"}, "max_completion_tokens"),
        ({"messages": HELLO, "n": 3}, "n"),
        ({"messages": HELLO, "stream": "yes"}, "stream"),
        ({"messages": HELLO, "tools": [{"type": "retrieval"}]}, "tools[0].type"),
        ({"messages": HELLO, "tool_choice": "sometimes"}, "tool_choice"),
        ({"messages": HELLO, "response_format": {"type": "yaml"}}, "response_format.type"),
        ({"messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [HELLO[0], {"role": "user", "content": 7}]}, "messages[1].content"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        (
            {"messages": HELLO, "stream_options": {"include_usage": 1}},
            "stream_options.include_usage",
        ),
    ]
    for fields, param in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="echo", **fields)
        error = sdk_error(caught.value, "invalid_request_error")
        assert error["param"] == param, (fields, error)
        assert param.split("[")[0].split(".")[0] in error["message"]


async def test_missing_model_is_400(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway()
    headers = {"Authorization": f"Bearer {await gw.new_key()}"}
    for body in (
        {"messages": HELLO},
        {"model": 12, "messages": HELLO},
        {"model": "", "messages": HELLO},
    ):
        async with http.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers) as resp:
            assert resp.status == 400, body
            error = assert_error_shape(await resp.json(), "invalid_request_error")
            assert error["param"] == "model"


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _deep_tool(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}, "required": ["x"]}
    return {"type": "function", "function": {"name": "deep", "parameters": schema}}


MALFORMED: list[tuple[str, bytes]] = [
    ("truncated", b'{"model": "echo", "messages": ['),
    ("not json", b"hello gateway"),
    ("empty", b""),
    ("array", b'[{"model": "echo"}]'),
    ("string", b'"echo"'),
    ("number", b"42"),
    ("null", b"null"),
    (
        "invalid utf-8",
        b'{"model": "echo", "messages": [{"role": "user", "content": "\xff\xfe\xfd"}]}',
    ),
    ("lone surrogate", b'{"model": "echo", "messages": [{"role": "user", "content": "\\ud800"}]}'),
    (
        "nan",
        b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
    ),
    ("deep array", _deep(100_000)),
    ("deep inside", b'{"model": "echo", "messages": ' + _deep(5000) + b"}"),
    (
        "deep metadata",
        b'{"model":"echo","messages":[],"metadata":' + b'{"a":' * 900 + b"1" + b"}" * 901,
    ),
    ("messages object", b'{"model": "echo", "messages": {"role": "user"}}'),
    ("message string", b'{"model": "echo", "messages": ["hello"]}'),
    ("content part junk", b'{"model": "echo", "messages": [{"role": "user", "content": [1, 2]}]}'),
    (
        "tool not object",
        b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "tools": [3]}',
    ),
    (
        "tool call junk",
        b'{"model":"echo","messages":[{"role":"assistant","tool_calls":[{"id":"c"}]}]}',
    ),
    (
        "huge number",
        b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1e400}',
    ),
]


@pytest.mark.parametrize("body", [b for _, b in MALFORMED], ids=[n for n, _ in MALFORMED])
async def test_malformed_bodies_are_400_never_500(
    start_gateway: StartGateway, http: aiohttp.ClientSession, body: bytes
) -> None:
    gw = await start_gateway()
    headers = {"Authorization": f"Bearer {await gw.new_key()}", "Content-Type": "application/json"}
    async with http.post(f"{gw.url}/v1/chat/completions", data=body, headers=headers) as resp:
        assert resp.status == 400, await resp.text()
        assert resp.content_type == "application/json"
        assert_error_shape(await resp.json(), "invalid_request_error")


async def test_deeply_nested_tool_schema_never_500(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway()
    headers = {"Authorization": f"Bearer {await gw.new_key()}"}
    body = {"model": "echo", "messages": HELLO, "tools": [_deep_tool(300)]}
    async with http.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers) as resp:
        assert resp.status in (200, 400), await resp.text()
        if resp.status == 400:
            assert_error_shape(await resp.json(), "invalid_request_error")


@pytest.mark.parametrize("value", ["0", "-5", "ten", "1.5", "\u00b2", "9" * 5000])
async def test_a_malformed_budget_header_is_400_naming_it(
    start_gateway: StartGateway, http: aiohttp.ClientSession, value: str
) -> None:
    gw = await start_gateway()
    headers = {"Authorization": f"Bearer {await gw.new_key()}", "X-Gateway-Budget": value}
    body = {"model": "echo", "messages": HELLO}
    async with http.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers) as resp:
        assert resp.status == 400, await resp.text()
        error = assert_error_shape(await resp.json(), "invalid_request_error")
        assert error["param"] == "X-Gateway-Budget"


LIMITED_CONFIG = """
limits: {max_body_bytes: 2048}
backends:
  echo: {type: echo}
routes:
  echo: {backend: echo, pricing: {input: 1, output: 2}}
"""


async def test_body_over_the_limit_is_413(
    start_gateway: StartGateway, sdk: MakeClient, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(LIMITED_CONFIG)
    key = await gw.new_key()
    client = sdk(gw, key)
    small = await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "a " * 499 + "a"}]
    )
    assert small.choices[0].message.content == "a " * 499 + "a"

    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "a " * 2000}]
        )
    assert caught.value.status_code == 413
    sdk_error(caught.value, "invalid_request_error")

    async def chunked() -> Any:  # no Content-Length: the limit must hold while reading
        yield b'{"model": "echo", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"a" * 1000
        yield b'"}]}'

    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with http.post(f"{gw.url}/v1/chat/completions", data=chunked(), headers=headers) as resp:
        assert resp.status == 413
        assert_error_shape(await resp.json(), "invalid_request_error")


async def test_zero_balance_is_402_on_a_priced_route_only(
    start_gateway: StartGateway, sdk: MakeClient
) -> None:
    gw = await start_gateway()
    client = sdk(gw, await gw.new_key(balance=0))
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="echo", messages=HELLO, stream=stream)
        assert caught.value.status_code == 402
        error = sdk_error(caught.value, "insufficient_quota")
        assert error["code"] == "insufficient_quota"
    free = await client.chat.completions.create(model="free", messages=HELLO)
    assert free.choices[0].message.content == "hello"


async def test_negative_balance_is_402(start_gateway: StartGateway, sdk: MakeClient) -> None:
    gw = await start_gateway()
    key, secret = await gw.new_key_record(balance=5)
    await gw.store.credit(key.id, -10, note="overdrawn")
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk(gw, secret).chat.completions.create(model="echo", messages=HELLO)
    assert caught.value.status_code == 402


# Upstream failures (openai_chat backend against the fake upstream)


async def test_upstream_500_is_502(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    fake_upstream.script = Script(status=500)
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    client = sdk(gw, await gw.new_key())
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="up", messages=HELLO, stream=stream)
        assert caught.value.status_code == 502
        sdk_error(caught.value)


async def test_upstream_connection_refused_is_502(
    start_gateway: StartGateway, sdk: MakeClient, upstream_env: str
) -> None:
    gw = await start_gateway(upstream_config(f"http://127.0.0.1:{free_port()}/v1"))
    client = sdk(gw, await gw.new_key())
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="up", messages=HELLO, stream=stream)
        assert caught.value.status_code == 502
        sdk_error(caught.value)


async def test_hanging_upstream_is_504(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    fake_upstream.script = Script(hang=True)
    gw = await start_gateway(upstream_config(fake_upstream.base_url, timeout=0.5))
    client = sdk(gw, await gw.new_key())
    for stream in (False, True):
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="up", messages=HELLO, stream=stream)
        assert caught.value.status_code == 504
        sdk_error(caught.value)
        assert 0.4 < time.monotonic() - started < 3.0


# The store


async def test_health_endpoints(start_gateway: StartGateway, http: aiohttp.ClientSession) -> None:
    gw = await start_gateway()
    async with http.get(f"{gw.url}/healthz") as resp:
        assert resp.status == 200
    async with http.get(f"{gw.url}/readyz") as resp:
        assert resp.status == 200
        assert (await resp.json())["store"] is True


async def test_unreachable_store_is_503_quickly(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(redis=f"redis://127.0.0.1:{free_port()}/0")
    headers = {"Authorization": "Bearer sk-gw-" + "y" * 43}
    body = {"model": "echo", "messages": HELLO}
    started = time.monotonic()
    async with http.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers) as resp:
        assert resp.status == 503
        assert_error_shape(await resp.json(), "server_error")
    async with http.get(f"{gw.url}/readyz") as resp:
        assert resp.status == 503
    async with http.get(f"{gw.url}/healthz") as resp:
        assert resp.status == 200  # alive, just not ready
    assert time.monotonic() - started < 5.0


async def test_silent_store_times_out_as_503(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    """A Redis that accepts connections but never answers must not hang requests."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = "redis: {socket_timeout: 0.3, connect_timeout: 0.3}\n" + ECHO_CONFIG
    try:
        gw = await start_gateway(config, redis=f"redis://127.0.0.1:{port}/0")
        headers = {"Authorization": "Bearer sk-gw-" + "z" * 43}
        started = time.monotonic()
        async with http.post(
            f"{gw.url}/v1/chat/completions",
            json={"model": "echo", "messages": HELLO},
            headers=headers,
        ) as resp:
            assert resp.status == 503
            assert_error_shape(await resp.json(), "server_error")
        assert time.monotonic() - started < 2.0
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_content_encoding(start_gateway: StartGateway, http: aiohttp.ClientSession) -> None:
    """A gzip body works; one that is not gzip is a 400; a gzip bomb is a 413."""
    gw = await start_gateway(LIMITED_CONFIG)
    headers = {
        "Authorization": f"Bearer {await gw.new_key()}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    body = json.dumps({"model": "echo", "messages": HELLO}).encode()
    url = f"{gw.url}/v1/chat/completions"
    async with http.post(url, data=gzip.compress(body), headers=headers) as resp:
        assert resp.status == 200
        assert (await resp.json())["choices"][0]["message"]["content"] == "hello"
    async with http.post(url, data=body, headers=headers) as resp:
        assert resp.status == 400
        assert_error_shape(await resp.json(), "invalid_request_error")
    bomb = body[:-2] + b', "pad": "' + b" " * 5_000_000 + b'"}'
    async with http.post(url, data=gzip.compress(bomb), headers=headers) as resp:
        assert resp.status == 413
        assert_error_shape(await resp.json(), "invalid_request_error")
