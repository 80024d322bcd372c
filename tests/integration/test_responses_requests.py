"""Open Responses requests: what is refused (400 naming the field, before any stream),
what is accepted, and ``max_output_tokens`` ending a response ``incomplete``."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.conftest import StartGateway
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.integration.responses_support import (
    check_error,
    create_json,
    create_stream,
    post_raw,
)
from tests.integration.support import upstream_config

TOOL: Any = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
BASE: Any = {"model": "echo", "input": "hello"}

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("max_output_tokens", {"max_output_tokens": 5}, "max_output_tokens"),
    ("max_output_tokens-type", {"max_output_tokens": "many"}, "max_output_tokens"),
    ("metadata-17", {"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ("metadata-value", {"metadata": {"k": "v" * 513}}, "metadata.k"),
    ("metadata-type", {"metadata": {"k": 1}}, "metadata.k"),
    ("metadata-key", {"metadata": {"k" * 65: "v"}}, "metadata"),
    (
        "nested-chat-tool",
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        "tools[0].name",
    ),
    ("tool-type", {"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ("tool-name", {"tools": [{"type": "function", "name": "bad name!"}]}, "tools[0].name"),
    (
        "tool-choice-unknown",
        {"tools": [TOOL], "tool_choice": {"type": "function", "name": "nope"}},
        "tool_choice.name",
    ),
    ("tool-choice-string", {"tools": [TOOL], "tool_choice": "always"}, "tool_choice"),
    (
        "allowed-tools-unknown",
        {
            "tools": [TOOL],
            "tool_choice": {"type": "allowed_tools", "tools": [{"type": "function", "name": "x"}]},
        },
        "tool_choice.tools[0].name",
    ),
    (
        "allowed-tools-mode",
        {
            "tools": [TOOL],
            "tool_choice": {
                "type": "allowed_tools",
                "tools": [{"type": "function", "name": "get_weather"}],
                "mode": "sometimes",
            },
        },
        "tool_choice.mode",
    ),
    (
        "content-type",
        {"input": [{"role": "user", "content": "a"}, {"role": "user", "content": 5}]},
        "input[1].content",
    ),
    (
        "part-type",
        {"input": [{"role": "system", "content": [{"type": "input_image", "image_url": "x"}]}]},
        "input[0].content[0].type",
    ),
    ("item-type", {"input": [{"type": "telepathy"}]}, "input[0].type"),
    ("role", {"input": [{"type": "message", "role": "robot", "content": "x"}]}, "input[0].role"),
    ("call-id", {"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    ("input-type", {"input": 42}, "input"),
    ("input-empty", {"input": []}, "input"),
    ("input-missing", {"input": None}, "input"),
    ("model-missing", {"model": None}, "model"),
    ("effort", {"reasoning": {"effort": "bogus"}}, "reasoning.effort"),
    ("summary", {"reasoning": {"summary": "long"}}, "reasoning.summary"),
    ("format-type", {"text": {"format": {"type": "yaml"}}}, "text.format.type"),
    (
        "format-name",
        {"text": {"format": {"type": "json_schema", "schema": {}}}},
        "text.format.name",
    ),
    ("verbosity", {"text": {"verbosity": "loud"}}, "text.verbosity"),
    ("temperature", {"temperature": 3}, "temperature"),
    ("top_p", {"top_p": 1.5}, "top_p"),
    ("top_logprobs", {"top_logprobs": 21}, "top_logprobs"),
    ("max_tool_calls", {"max_tool_calls": 0}, "max_tool_calls"),
    ("include", {"include": ["everything"]}, "include[0]"),
    ("truncation", {"truncation": "sometimes"}, "truncation"),
    ("service_tier", {"service_tier": "gold"}, "service_tier"),
    ("store-type", {"store": "yes"}, "store"),
    (
        "stream_options",
        {"stream_options": {"include_obfuscation": "no"}},
        "stream_options.include_obfuscation",
    ),
    ("previous-type", {"previous_response_id": 7}, "previous_response_id"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("fields", "param"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
async def test_invalid_request_is_400_naming_the_field(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    fields: dict[str, Any],
    param: str,
    stream: bool,
) -> None:
    gw = await start_gateway()
    key = await gw.new_key()
    body = {k: v for k, v in {**BASE, **fields}.items() if v is not None}
    status, content_type, raw = await post_raw(http, gw, key, {**body, "stream": stream})
    assert status == 400, raw[:300]
    assert content_type.startswith("application/json")  # never a 200 stream
    error = check_error(orjson.loads(raw), status)
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"


async def test_invalid_json_body(start_gateway: StartGateway, http: aiohttp.ClientSession) -> None:
    gw = await start_gateway()
    key = await gw.new_key()
    async with http.post(
        f"{gw.url}/v1/responses", data=b"{not json", headers={"Authorization": f"Bearer {key}"}
    ) as resp:
        assert resp.status == 400
        check_error(await resp.json(), resp.status)


async def test_sdk_sees_bad_request(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    async with openai.AsyncOpenAI(
        base_url=f"{gw.url}/v1", api_key=await gw.new_key(), max_retries=0
    ) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.responses.create(model="echo", input="x", max_output_tokens=5, stream=True)
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == "max_output_tokens"  # type: ignore[index]


async def test_auth_and_unknown_model(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway()
    status, _, raw = await post_raw(http, gw, "sk-wrong", {**BASE, "stream": True})
    assert status == 401
    check_error(orjson.loads(raw), status)
    key = await gw.new_key()
    status, _, raw = await post_raw(http, gw, key, {**BASE, "model": "nobody", "stream": True})
    assert status == 404
    assert check_error(orjson.loads(raw), status)["param"] == "model"
    async with http.get(f"{gw.url}/v1/responses/resp_x") as resp:
        assert resp.status == 401


LONG = " ".join(f"word{i}" for i in range(40))


async def test_max_output_tokens_streamed(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway()
    key = await gw.new_key()
    stream = await create_stream(
        http, gw, key, {"model": "echo", "input": LONG, "max_output_tokens": 16}
    )
    assert stream.types[-1] == "response.incomplete"
    assert "response.completed" not in stream.types
    final = stream.final
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["max_output_tokens"] == 16
    [item] = final["output"]
    assert item["status"] == "incomplete"
    done = stream.of("response.output_item.done")[0]["item"]
    assert done["status"] == "incomplete"
    assert len(stream.of("response.output_text.delta")) == 16
    assert LONG.startswith(stream.text)
    assert final["usage"]["output_tokens"] == 16


async def test_max_output_tokens_json(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway()
    key = await gw.new_key()
    response = await create_json(
        http, gw, key, {"model": "echo", "input": LONG, "max_output_tokens": 16}
    )
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"
    assert response["completed_at"] is None
    # an incomplete response can be chained like any other
    follow = await create_json(
        http, gw, key, {"model": "echo", "input": "go on", "previous_response_id": response["id"]}
    )
    assert follow["status"] == "completed"


async def test_every_input_form_is_accepted(
    start_gateway: StartGateway,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
    http: aiohttp.ClientSession,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    key = await gw.new_key()
    image = "data:image/png;base64,iVBORw0KGgo="
    pdf = "data:application/pdf;base64,JVBERi0x"
    body = {
        "model": "up",
        "input": [
            {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "s"}]},
            {
                "role": "user",  # no type
                "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": image},
                    {
                        "type": "input_image",
                        "image_url": "https://example.com/a.png",
                        "detail": "low",
                    },
                    {"type": "input_file", "filename": "a.pdf", "file_data": pdf},
                ],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "ok", "annotations": []}],
                "id": "msg_client",
                "status": "completed",
            },
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hm"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {
                "type": "function_call_output",
                "call_id": "c1",
                "output": [{"type": "input_text", "text": "out"}],
            },
            {"type": "message", "role": "developer", "content": "dev"},
            {"type": "message", "role": "user", "content": "last"},
        ],
        "include": ["reasoning.encrypted_content", "message.output_text.logprobs"],
        "stream_options": {"include_obfuscation": False},
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "top_logprobs": 3,
        "max_tool_calls": 2,
        "truncation": "disabled",
        "text": {"format": {"type": "text"}, "verbosity": "low"},
        "reasoning": {"effort": "xhigh", "summary": "concise"},
    }
    response = await create_json(http, gw, key, body)
    assert response["status"] == "completed"
    assert response["top_logprobs"] == 3 and response["max_tool_calls"] == 2
    assert response["text"]["verbosity"] == "low"
    assert response["reasoning"] == {"effort": "xhigh", "summary": "concise"}
    messages = fake_upstream.last.body["messages"]
    assert [m["role"] for m in messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "developer",
        "user",
    ]
    parts = messages[1]["content"]
    assert parts[0] == {"type": "text", "text": "look"}
    assert parts[1] == {"type": "image_url", "image_url": {"url": image}}
    assert parts[2] == {
        "type": "image_url",
        "image_url": {"url": "https://example.com/a.png", "detail": "low"},
    }
    assert parts[3] == {"type": "file", "file": {"filename": "a.pdf", "file_data": pdf}}
    assert messages[2]["content"] == "ok"
    assert messages[2]["tool_calls"][0]["id"] == "c1"
    assert messages[3] == {"role": "tool", "tool_call_id": "c1", "content": "out"}
    upstream = fake_upstream.last.body
    assert upstream["presence_penalty"] == 0.5 and upstream["frequency_penalty"] == -0.5
    assert upstream["reasoning_effort"] == "xhigh"
