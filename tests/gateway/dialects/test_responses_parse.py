from __future__ import annotations

from typing import Any

import pytest

from gateway.dialects.responses_parse import ResponsesRequest, parse_responses_request
from gateway.errors import InvalidRequest
from gateway.invocation import (
    ForcedFunction,
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    Message,
    ResponseFormat,
    Sampling,
    TextPart,
)
from gateway.wire.responses_items import ItemReference

WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}
TIME: Any = {"type": "function", "name": "get_time"}


def parse(**fields: Any) -> ResponsesRequest:
    return parse_responses_request({"model": "echo", "input": "hi", **fields})


def param_of(**fields: Any) -> str | None:
    with pytest.raises(InvalidRequest) as caught:
        parse(**fields)
    return caught.value.param


def test_minimal_defaults() -> None:
    req = parse()
    inv = req.invocation
    assert inv.agent == "echo"
    assert inv.input == (Message("user", (TextPart("hi"),)),)
    assert req.items == inv.input
    assert req.store is True and req.background is False
    assert req.previous_response_id is None
    assert inv.tools == () and inv.tool_choice is None
    assert inv.sampling == Sampling()
    assert inv.instructions is None and inv.max_output_tokens is None
    assert inv.response_format is None and inv.include == () and inv.metadata == {}
    assert inv.stream is False
    assert dict(req.echo) == {
        "instructions": None,
        "tools": [],
        "tool_choice": "auto",
        "truncation": "disabled",
        "parallel_tool_calls": True,
        "text": {"format": {"type": "text"}},
        "top_p": 1.0,
        "temperature": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "top_logprobs": 0,
        "reasoning": None,
        "max_output_tokens": None,
        "max_tool_calls": None,
        "service_tier": "default",
        "metadata": {},
        "safety_identifier": None,
        "prompt_cache_key": None,
    }


def test_every_field() -> None:
    req = parse(
        input=[{"role": "user", "content": "a"}, {"type": "item_reference", "id": "msg_x_0"}],
        instructions="be brief",
        previous_response_id="resp_prev",
        tools=[WEATHER, TIME],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0.3,
        top_p=0.8,
        presence_penalty=1.5,
        frequency_penalty=-1,
        max_output_tokens=32,
        max_tool_calls=3,
        top_logprobs=5,
        text={"format": {"type": "text"}, "verbosity": "high"},
        reasoning={"effort": "medium", "summary": "detailed"},
        include=["reasoning.encrypted_content", "message.output_text.logprobs"],
        metadata={"a": "b"},
        truncation="auto",
        service_tier="priority",
        store=False,
        stream=True,
        stream_options={"include_obfuscation": False},
        safety_identifier="sid",
        prompt_cache_key="pck",
    )
    inv = req.invocation
    assert inv.input == (Message("user", (TextPart("a"),)),)  # references resolved later
    assert req.items[1] == ItemReference("msg_x_0")
    assert inv.instructions == "be brief"
    assert req.previous_response_id == "resp_prev"
    assert inv.tools == (
        FunctionTool("get_weather", "weather", WEATHER["parameters"], True),
        FunctionTool("get_time"),
    )
    assert inv.tool_choice == "required"
    assert inv.parallel_tool_calls is False
    assert inv.sampling == Sampling(
        temperature=0.3, top_p=0.8, presence_penalty=1.5, frequency_penalty=-1.0
    )
    assert (inv.max_output_tokens, inv.max_tool_calls, inv.top_logprobs) == (32, 3, 5)
    assert inv.response_format == ResponseFormat("text")
    assert inv.text_verbosity == "high"
    assert (inv.reasoning_effort, inv.reasoning_summary) == ("medium", "detailed")
    assert inv.include == ("reasoning.encrypted_content", "message.output_text.logprobs")
    assert inv.metadata == {"a": "b"}
    assert inv.service_tier == "priority"
    assert (inv.safety_identifier, inv.prompt_cache_key) == ("sid", "pck")
    assert inv.stream is True and req.store is False
    echo = dict(req.echo)
    assert echo["tools"] == [
        WEATHER,
        {
            "type": "function",
            "name": "get_time",
            "description": None,
            "parameters": None,
            "strict": None,
        },
    ]
    assert echo["tool_choice"] == "required"
    assert echo["truncation"] == "auto"
    assert echo["parallel_tool_calls"] is False
    assert echo["text"] == {"format": {"type": "text"}, "verbosity": "high"}
    assert (echo["temperature"], echo["top_p"]) == (0.3, 0.8)
    assert (echo["presence_penalty"], echo["frequency_penalty"]) == (1.5, -1.0)
    assert echo["reasoning"] == {"effort": "medium", "summary": "detailed"}
    assert (echo["max_output_tokens"], echo["max_tool_calls"], echo["top_logprobs"]) == (32, 3, 5)
    assert echo["service_tier"] == "priority"
    assert echo["metadata"] == {"a": "b"}
    assert (echo["safety_identifier"], echo["prompt_cache_key"]) == ("sid", "pck")
    assert echo["instructions"] == "be brief"


@pytest.mark.parametrize("choice", ["none", "auto", "required"])
def test_tool_choice_strings(choice: str) -> None:
    req = parse(tools=[WEATHER], tool_choice=choice)
    assert req.invocation.tool_choice == choice
    assert req.invocation.tools == (
        FunctionTool("get_weather", "weather", WEATHER["parameters"], True),
    )
    assert req.echo["tool_choice"] == choice


def test_tool_choice_function() -> None:
    req = parse(tools=[WEATHER, TIME], tool_choice={"type": "function", "name": "get_time"})
    assert req.invocation.tool_choice == ForcedFunction("get_time")
    assert [t.name for t in req.invocation.tools] == ["get_weather", "get_time"]
    assert req.echo["tool_choice"] == {"type": "function", "name": "get_time"}


@pytest.mark.parametrize("mode", ["none", "auto", "required", None])
def test_tool_choice_allowed_tools(mode: str | None) -> None:
    choice: dict[str, Any] = {
        "type": "allowed_tools",
        "tools": [{"type": "function", "name": "get_time"}],
    }
    if mode:
        choice["mode"] = mode
    req = parse(tools=[WEATHER, TIME], tool_choice=choice)
    assert [t.name for t in req.invocation.tools] == ["get_time"]  # the backend sees only these
    assert req.invocation.tool_choice == (mode or "auto")
    assert [t["name"] for t in req.echo["tools"]] == ["get_weather", "get_time"]
    assert req.echo["tool_choice"] == {
        "type": "allowed_tools",
        "tools": [{"type": "function", "name": "get_time"}],
        "mode": mode or "auto",
    }


def test_allowed_tools_keeps_declaration_order() -> None:
    choice = {
        "type": "allowed_tools",
        "tools": [
            {"type": "function", "name": "get_time"},
            {"type": "function", "name": "get_weather"},
        ],
        "mode": "required",
    }
    req = parse(tools=[WEATHER, TIME], tool_choice=choice)
    assert [t.name for t in req.invocation.tools] == ["get_weather", "get_time"]


@pytest.mark.parametrize(
    ("choice", "param"),
    [
        ({"type": "function", "name": "nope"}, "tool_choice.name"),
        ({"type": "function"}, "tool_choice.name"),
        (
            {"type": "allowed_tools", "tools": [{"type": "function", "name": "nope"}]},
            "tool_choice.tools[0].name",
        ),
        ({"type": "allowed_tools"}, "tool_choice.tools"),
        ({"type": "allowed_tools", "tools": ["get_time"]}, "tool_choice.tools[0]"),
        (
            {
                "type": "allowed_tools",
                "tools": [{"type": "function", "name": "get_time"}],
                "mode": "maybe",
            },
            "tool_choice.mode",
        ),
        ({"type": "web_search"}, "tool_choice"),
        ("sometimes", "tool_choice"),
        (3, "tool_choice"),
    ],
)
def test_tool_choice_invalid(choice: Any, param: str) -> None:
    assert param_of(tools=[WEATHER, TIME], tool_choice=choice) == param


def test_json_schema_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    req = parse(
        text={
            "format": {
                "type": "json_schema",
                "name": "thing",
                "description": "a thing",
                "schema": schema,
                "strict": True,
            }
        }
    )
    assert req.invocation.response_format == ResponseFormat(
        "json_schema", name="thing", schema=schema, strict=True, description="a thing"
    )
    assert req.echo["text"] == {
        "format": {
            "type": "json_schema",
            "name": "thing",
            "description": "a thing",
            "schema": None,  # the published schema types the echo as null
            "strict": True,
        }
    }
    plain = parse(text={"format": {"type": "json_schema", "name": "n"}})
    assert plain.invocation.response_format == ResponseFormat("json_schema", name="n")
    assert plain.echo["text"]["format"]["strict"] is False


def test_include_values() -> None:
    assert parse(include=[]).invocation.include == ()
    assert param_of(include=["file_search_call.results"]) == "include[0]"
    assert param_of(include="reasoning.encrypted_content") == "include"


def test_metadata_limits() -> None:
    sixteen = {f"k{i}": "v" * 512 for i in range(16)}
    assert parse(metadata=sixteen).invocation.metadata == sixteen
    assert parse(metadata={"k" * 64: "v"}).echo["metadata"] == {"k" * 64: "v"}
    assert parse(metadata=None).echo["metadata"] == {}
    assert param_of(metadata={f"k{i}": "v" for i in range(17)}) == "metadata"
    assert param_of(metadata={"k" * 65: "v"}) == "metadata"
    assert param_of(metadata={"k": "v" * 513}) == "metadata.k"
    assert param_of(metadata={"k": None}) == "metadata.k"
    assert param_of(metadata=["k"]) == "metadata"


def test_previous_response_without_input() -> None:
    req = parse_responses_request({"model": "echo", "previous_response_id": "resp_1"})
    assert req.items == () and req.previous_response_id == "resp_1"
    req = parse_responses_request({"model": "echo", "previous_response_id": "resp_1", "input": []})
    assert req.items == ()


def test_invocation_with_context_and_references() -> None:
    req = parse(
        input=[
            {"type": "item_reference", "id": "fc_a_1"},
            {"type": "function_call_output", "call_id": "c", "output": "r"},
        ]
    )
    context = (Message("user", (TextPart("before"),)),)
    call = FunctionCall("c", "f", "{}")
    inv = req.invocation_with(context, {"fc_a_1": call})
    assert inv.input == (*context, call, FunctionCallOutput("c", "r"))
    assert inv.agent == "echo"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": None}, "model"),
        ({"model": 3}, "model"),
        ({"model": ""}, "model"),
        ({"input": None}, "input"),
        ({"input": {}}, "input"),
        ({"input": []}, "input"),
        ({"input": [1]}, "input[0]"),
        ({"instructions": 1}, "instructions"),
        ({"tools": {}}, "tools"),
        ({"tools": [{"name": "x"}]}, "tools[0].type"),
        ({"tools": [{"type": "function", "function": {"name": "x"}}]}, "tools[0].name"),
        ({"tools": [{"type": "function", "name": "x" * 65}]}, "tools[0].name"),
        ({"tools": [{"type": "function", "name": "a.b"}]}, "tools[0].name"),
        ({"tools": [{"type": "function", "name": "f", "parameters": []}]}, "tools[0].parameters"),
        ({"tools": [{"type": "function", "name": "f", "strict": "yes"}]}, "tools[0].strict"),
        ({"parallel_tool_calls": "no"}, "parallel_tool_calls"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 2.1}, "temperature"),
        ({"top_p": -1}, "top_p"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"frequency_penalty": "x"}, "frequency_penalty"),
        ({"max_output_tokens": 15}, "max_output_tokens"),
        ({"max_output_tokens": 16.5}, "max_output_tokens"),
        ({"max_tool_calls": 0}, "max_tool_calls"),
        ({"top_logprobs": -1}, "top_logprobs"),
        ({"top_logprobs": 21}, "top_logprobs"),
        ({"text": "json"}, "text"),
        ({"text": {"format": "json"}}, "text.format"),
        ({"text": {"format": {}}}, "text.format.type"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"text": {"format": {"type": "json_schema"}}}, "text.format.name"),
        (
            {"text": {"format": {"type": "json_schema", "name": "n", "schema": 1}}},
            "text.format.schema",
        ),
        ({"text": {"verbosity": "max"}}, "text.verbosity"),
        ({"reasoning": "high"}, "reasoning"),
        ({"reasoning": {"effort": "minimal"}}, "reasoning.effort"),
        ({"reasoning": {"summary": "all"}}, "reasoning.summary"),
        ({"truncation": "none"}, "truncation"),
        ({"service_tier": "standard"}, "service_tier"),
        ({"store": 1}, "store"),
        ({"stream": "yes"}, "stream"),
        ({"background": "yes"}, "background"),
        ({"stream_options": []}, "stream_options"),
        ({"previous_response_id": 1}, "previous_response_id"),
        ({"safety_identifier": 1}, "safety_identifier"),
        ({"prompt_cache_key": 1}, "prompt_cache_key"),
    ],
)
def test_invalid_fields(fields: dict[str, Any], param: str) -> None:
    assert param_of(**fields) == param


def test_body_must_be_an_object() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_responses_request([{"model": "echo"}])
    assert caught.value.param == "body"


def test_boundaries_accepted() -> None:
    inv = parse(
        temperature=0, top_p=1, max_output_tokens=16, top_logprobs=20, max_tool_calls=1
    ).invocation
    assert inv.max_output_tokens == 16 and inv.top_logprobs == 20
    assert parse(background=True).background is True
    streamed = parse(background=True, stream=True)  # streamed, and resumable (issue 17)
    assert streamed.background is True and streamed.invocation.stream is True
    assert parse(text={"format": {"type": "json_object"}}).invocation.response_format == (
        ResponseFormat("json_object")
    )
