"""Anthropic Messages requests -> the canonical invocation."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from gateway.dialects.messages_parse import effort_of, parse_messages_request
from gateway.errors import InvalidRequest
from gateway.invocation import (
    FilePart,
    ForcedFunction,
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    ImagePart,
    Message,
    Reasoning,
    ResponseFormat,
    TextPart,
)

HELLO: list[dict[str, Any]] = [{"role": "user", "content": "hello"}]


def parse(**fields: Any) -> Any:
    body: dict[str, Any] = {"model": "claude", "max_tokens": 100, "messages": HELLO}
    body.update(fields)
    return parse_messages_request(body)


def refused(body: object, **kw: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse_messages_request(body, **kw)
    assert caught.value.status == 400
    return caught.value


def test_minimal_request() -> None:
    inv = parse()
    assert inv.agent == "claude"
    assert inv.input == (Message("user", (TextPart("hello"),)),)
    assert inv.max_output_tokens == 100
    assert inv.stream is False
    assert inv.instructions is None
    assert inv.tools == () and inv.tool_choice is None and inv.parallel_tool_calls is None


def test_sampling_stop_user_and_stream() -> None:
    inv = parse(
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        stop_sequences=["END", "STOP"],
        metadata={"user_id": "user-42"},
        stream=True,
    )
    assert inv.sampling.temperature == 0.5
    assert inv.sampling.top_p == 0.9
    assert inv.sampling.stop == ("END", "STOP")
    assert inv.user == "user-42"
    assert inv.stream is True


def test_system_string_and_blocks() -> None:
    assert parse(system="Be brief.").instructions == "Be brief."
    blocks = [
        {"type": "text", "text": "You are a helper."},
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
    ]
    assert parse(system=blocks).instructions == "You are a helper.\n\nBe brief."


def test_content_blocks_text_image_document() -> None:
    pdf = base64.b64encode(b"%PDF-1.4").decode()
    content = [
        {"type": "text", "text": "Look:"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
        {"type": "image", "source": {"type": "file", "file_id": "file_1"}},
        {
            "type": "document",
            "title": "paper.pdf",
            "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
        },
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hi"}},
        {
            "type": "document",
            "source": {"type": "content", "content": [{"type": "text", "text": "a"}]},
        },
        {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
        {"type": "document", "source": {"type": "file", "file_id": "file_2"}},
    ]
    (msg,) = parse(messages=[{"role": "user", "content": content}]).input
    assert msg == Message(
        "user",
        (
            TextPart("Look:"),
            ImagePart("data:image/png;base64,iVBO"),
            ImagePart("https://example.com/a.jpg"),
            ImagePart(file_id="file_1"),
            FilePart("paper.pdf", data=f"data:application/pdf;base64,{pdf}"),
            FilePart(data="data:text/plain;base64," + base64.b64encode(b"hi").decode()),
            FilePart(data="data:text/plain;base64," + base64.b64encode(b"a").decode()),
            FilePart(url="https://example.com/a.pdf"),
            FilePart(file_id="file_2"),
        ),
    )


def test_tool_round_trip() -> None:
    messages = [
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "use the tool", "signature": "sig"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_2", "name": "time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [
                        {"type": "text", "text": "no clock"},
                        {
                            "type": "image",
                            "source": {"type": "url", "url": "https://example.com/c.png"},
                        },
                    ],
                    "is_error": True,
                },
                {"type": "text", "text": "thanks"},
            ],
        },
    ]
    items = parse(messages=messages).input
    assert items == (
        Message("user", (TextPart("weather in Paris?"),)),
        Reasoning("use the tool"),
        Message("assistant", (TextPart("Let me check."),)),
        FunctionCall("toolu_1", "weather", '{"city":"Paris"}'),
        FunctionCall("toolu_2", "time", "{}"),
        FunctionCallOutput("toolu_1", "sunny"),
        FunctionCallOutput("toolu_2", "Error: no clock"),
        Message("user", (ImagePart("https://example.com/c.png"), TextPart("thanks"))),
    )
    assert orjson.loads(items[3].arguments) == {"city": "Paris"}  # type: ignore[union-attr]


def test_tool_result_without_content() -> None:
    items = parse(
        messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}]
    ).input
    assert items == (FunctionCallOutput("t", ""),)


def test_tools_and_tool_choice() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    tools = [
        {"name": "weather", "description": "Weather", "input_schema": schema},
        {"type": "custom", "name": "time", "input_schema": {"type": "object"}},
    ]
    inv = parse(tools=tools, tool_choice={"type": "auto"})
    assert inv.tools == (
        FunctionTool("weather", "Weather", schema),
        FunctionTool("time", None, {"type": "object"}),
    )
    assert inv.tool_choice == "auto"
    assert parse(tool_choice={"type": "any"}).tool_choice == "required"
    assert parse(tool_choice={"type": "none"}).tool_choice == "none"
    forced = parse(tool_choice={"type": "tool", "name": "weather"})
    assert forced.tool_choice == ForcedFunction("weather")
    serial = parse(tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert serial.parallel_tool_calls is False
    parallel = parse(tool_choice={"type": "auto", "disable_parallel_tool_use": False})
    assert parallel.parallel_tool_calls is None


@pytest.mark.parametrize(
    ("budget", "effort"),
    [(1024, "low"), (4095, "low"), (4096, "medium"), (16383, "medium"), (16384, "high")],
)
def test_thinking_budget_buckets(budget: int, effort: str) -> None:
    assert effort_of(budget) == effort
    inv = parse(max_tokens=40000, thinking={"type": "enabled", "budget_tokens": budget})
    assert inv.reasoning_effort == effort


def test_thinking_disabled_or_adaptive_sets_no_effort() -> None:
    assert parse(thinking={"type": "disabled"}).reasoning_effort is None
    assert parse(thinking={"type": "adaptive"}).reasoning_effort is None


def test_output_config_effort_and_format() -> None:
    thinking = {"type": "enabled", "budget_tokens": 1024}
    inv = parse(max_tokens=2000, thinking=thinking, output_config={"effort": "max"})
    assert inv.reasoning_effort == "xhigh"
    assert parse(output_config={"effort": "medium"}).reasoning_effort == "medium"
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    fmt = parse(output_config={"format": {"type": "json_schema", "schema": schema}})
    assert fmt.response_format == ResponseFormat("json_schema", name="output", schema=schema)


def test_count_only_needs_no_max_tokens() -> None:
    inv = parse_messages_request(
        {"model": "claude", "messages": HELLO, "stream": True}, count_only=True
    )
    assert inv.max_output_tokens is None and inv.stream is False


def test_max_tokens_is_required() -> None:
    err = refused({"model": "claude", "messages": HELLO})
    assert err.param == "max_tokens"
    assert "max_tokens" in err.message


OK: dict[str, Any] = {"model": "claude", "max_tokens": 100, "messages": HELLO}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": None}, "model"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "audio"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/bmp",
                                    "data": "x",
                                },
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].source.media_type",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t"}]}]},
            "messages[0].content[0].input",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
            "messages[0].content[0].tool_use_id",
        ),
        ({"temperature": 1.5}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"stop_sequences": [1]}, "stop_sequences[0]"),
        ({"stream": "yes"}, "stream"),
        ({"system": 5}, "system"),
        ({"system": [{"type": "image"}]}, "system[0].type"),
        ({"metadata": {"user_id": 5}}, "metadata.user_id"),
        ({"tools": [{"name": "x"}]}, "tools[0].input_schema"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": 512}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "maybe"}}, "thinking.type"),
        ({"output_config": {"effort": "huge"}}, "output_config.effort"),
        ({"output_config": {"format": {"type": "yaml"}}}, "output_config.format.type"),
        ({"output_config": {"format": {"type": "json_schema"}}}, "output_config.format.schema"),
    ],
)
def test_invalid_fields_name_the_param(fields: dict[str, Any], param: str) -> None:
    err = refused({**OK, **fields})
    assert err.param == param, err.message
    assert param in err.message


def test_body_must_be_an_object() -> None:
    assert refused([OK]).param == "body"


def test_service_tier_and_speed_are_read_for_the_route_to_judge() -> None:
    invocation = parse(service_tier="auto", speed="fast")
    assert (invocation.service_tier, invocation.speed) == ("auto", "fast")
    assert (parse().service_tier, parse().speed) == (None, None)
    for field, value in (("service_tier", "priority"), ("speed", "ludicrous")):
        body = {"model": "claude", "max_tokens": 100, "messages": HELLO, field: value}
        assert refused(body).param == field
