"""``anthropic_request``: request bodies from invocations."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from gateway_plugins.backends.anthropic_request import messages_body

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
    Sampling,
    TextPart,
)
from tests.conftest import invocation


def user(text: str) -> Message:
    return Message("user", (TextPart(text),))


def assistant(text: str) -> Message:
    return Message("assistant", (TextPart(text),))


def body(**fields: Any) -> dict[str, Any]:
    max_tokens = fields.pop("max_tokens", 1024)
    return messages_body(invocation(**fields), "claude-sonnet-4-5", max_tokens)


# messages_body


def test_minimal_body() -> None:
    assert messages_body(invocation("hi"), "claude-sonnet-4-5", 4096) == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "stream": True,
    }


def test_system_joins_instructions_and_system_and_developer_messages() -> None:
    b = body(
        instructions="You are terse.",
        input=(
            Message("system", (TextPart("Answer in French."),)),
            user("hi"),
            Message("developer", (TextPart("No emoji."),)),
            assistant("Salut"),
            user("encore"),
        ),
    )
    assert b["system"] == "You are terse.\n\nAnswer in French.\n\nNo emoji."
    assert [m["role"] for m in b["messages"]] == ["user", "assistant", "user"]


def test_no_system_key_without_system_text() -> None:
    assert "system" not in body(input=(Message("system", (TextPart(""),)), user("x")))


def test_consecutive_same_role_items_are_merged() -> None:
    b = body(input=(user("one"), user("two"), assistant("a"), assistant("b"), user("three")))
    assert b["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        },
        {"role": "user", "content": [{"type": "text", "text": "three"}]},
    ]


def test_empty_text_parts_and_messages_are_dropped() -> None:
    b = body(input=(user("q"), assistant(""), Message("user", (TextPart(""), TextPart("x")))))
    assert b["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "q"}, {"type": "text", "text": "x"}]}
    ]


def test_a_conversation_of_only_system_messages_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        body(input=(Message("system", (TextPart("x"),)),))


def test_images() -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    b = body(
        input=(
            Message(
                "user",
                (
                    TextPart("what is this?"),
                    ImagePart("https://example.com/cat.jpg", detail="high"),
                    ImagePart(f"data:image/png;base64,{png}"),
                ),
            ),
        )
    )
    assert b["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
    ]


@pytest.mark.parametrize(
    "part",
    [ImagePart(file_id="file-abc"), ImagePart("data:image/png,notbase64"), FilePart(file_id="f")],
)
def test_unsendable_parts_are_invalid_requests(part: ImagePart | FilePart) -> None:
    with pytest.raises(InvalidRequest):
        body(input=(Message("user", (part,)),))


def test_files_become_documents() -> None:
    pdf = base64.b64encode(b"%PDF-1.4 fake").decode()
    note = base64.b64encode("caf\u00e9 notes".encode()).decode()
    b = body(
        input=(
            Message(
                "user",
                (
                    FilePart("a.pdf", f"data:application/pdf;base64,{pdf}"),
                    FilePart(None, pdf),
                    FilePart(url="https://example.com/b.pdf"),
                    FilePart("n.txt", f"data:text/plain;base64,{note}"),
                ),
            ),
        )
    )
    pdf_source = {"type": "base64", "media_type": "application/pdf", "data": pdf}
    assert b["messages"][0]["content"] == [
        {"type": "document", "source": pdf_source, "title": "a.pdf"},
        {"type": "document", "source": pdf_source},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/b.pdf"}},
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "caf\u00e9 notes"},
            "title": "n.txt",
        },
    ]


def test_unsupported_file_type_is_an_invalid_request() -> None:
    data = base64.b64encode(b"PK zip").decode()
    with pytest.raises(InvalidRequest):
        body(input=(Message("user", (FilePart("a.zip", f"data:application/zip;base64,{data}"),)),))


def test_function_calls_and_outputs_become_tool_use_and_tool_result() -> None:
    b = body(
        input=(
            user("weather in Paris and Rome?"),
            Reasoning("I should call the tool", encrypted_content="opaque"),
            assistant("Let me check."),
            FunctionCall("toolu_1", "get_weather", '{"city": "Paris"}'),
            FunctionCall("toolu_2", "get_weather", '{"city": "Rome"}'),
            FunctionCallOutput("toolu_1", "18C"),
            FunctionCallOutput("toolu_2", "24C"),
            user("thanks"),
        )
    )
    assert b["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "24C"},
                {"type": "text", "text": "thanks"},
            ],
        },
    ]


def test_tool_results_come_first_in_their_user_message() -> None:
    b = body(
        input=(
            user("go"),
            FunctionCall("toolu_1", "f", "{}"),
            user("(note)"),
            FunctionCallOutput("toolu_1", "done"),
        )
    )
    assert [c["type"] for c in b["messages"][-1]["content"]] == ["tool_result", "text"]


def test_empty_arguments_are_an_empty_input() -> None:
    b = body(input=(user("go"), FunctionCall("toolu_1", "ping", "")))
    assert b["messages"][1]["content"][0]["input"] == {}


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", '"text"'])
def test_arguments_that_are_not_a_json_object_are_refused(arguments: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        body(input=(user("go"), FunctionCall("toolu_1", "f", arguments)))
    assert caught.value.param == "input"


def test_tools_and_tool_choice() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    b = body(
        tools=(
            FunctionTool("get_weather", "Weather of a city", schema, True),
            FunctionTool("bare"),
        ),
        tool_choice="auto",
    )
    assert b["tools"] == [
        {"name": "get_weather", "description": "Weather of a city", "input_schema": schema},
        {"name": "bare", "input_schema": {"type": "object"}},
    ]
    assert b["tool_choice"] == {"type": "auto"}


def test_a_schema_without_type_gets_object() -> None:
    props = {"properties": {"q": {"type": "string"}}}
    b = body(tools=(FunctionTool("f", parameters=props), FunctionTool("g", parameters={})))
    assert [t["input_schema"] for t in b["tools"]] == [
        {"type": "object", **props},
        {"type": "object"},
    ]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        (ForcedFunction("f"), None, {"type": "tool", "name": "f"}),
        (None, None, None),
        (None, True, None),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (
            ForcedFunction("f"),
            False,
            {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
        ),
        ("none", False, {"type": "none"}),
    ],
)
def test_tool_choice_mapping(
    choice: Any, parallel: bool | None, expected: dict[str, Any] | None
) -> None:
    b = body(tools=(FunctionTool("f"),), tool_choice=choice, parallel_tool_calls=parallel)
    assert b.get("tool_choice") == expected


def test_no_tool_choice_without_tools() -> None:
    b = body(tool_choice="required", parallel_tool_calls=False)
    assert "tools" not in b and "tool_choice" not in b


def test_sampling_stop_and_user() -> None:
    b = body(
        sampling=Sampling(0.2, 0.9, 0.5, -0.5, 7, ("END", "STOP")),
        user="user-42",
        safety_identifier="ignored-when-user-is-set",
        metadata={"not": "forwarded"},
        response_format=ResponseFormat("json_object"),
        service_tier="flex",
        prompt_cache_key="k",
    )
    assert b["temperature"] == 0.2 and b["top_p"] == 0.9
    assert b["stop_sequences"] == ["END", "STOP"]
    assert b["metadata"] == {"user_id": "user-42"}
    for absent in ("seed", "presence_penalty", "frequency_penalty", "response_format", "stop"):
        assert absent not in b
    assert set(b) == {
        "model", "max_tokens", "messages", "temperature", "top_p", "stop_sequences",
        "metadata", "stream",
    }  # fmt: skip


def test_safety_identifier_is_the_user_id_when_no_user() -> None:
    assert body(safety_identifier="sid")["metadata"] == {"user_id": "sid"}
    assert "metadata" not in body()


@pytest.mark.parametrize(
    ("effort", "max_tokens", "budget"),
    [
        ("minimal", 8192, 1024),
        ("low", 8192, 1024),
        ("medium", 8192, 4096),
        ("high", 32000, 16384),
        ("xhigh", 64000, 32768),
        ("high", 8192, 8191),  # capped below max_tokens
        ("low", 1024, None),  # no room for the minimum budget of 1024
        ("none", 8192, None),
        (None, 8192, None),
    ],
)
def test_reasoning_effort_maps_to_a_thinking_budget(
    effort: str | None, max_tokens: int, budget: int | None
) -> None:
    b = body(reasoning_effort=effort, max_tokens=max_tokens, sampling=Sampling(0.3, 0.8))
    if budget is None:
        assert "thinking" not in b
        assert (b["temperature"], b["top_p"]) == (0.3, 0.8)
    else:
        assert b["thinking"] == {"type": "enabled", "budget_tokens": budget}
        assert "temperature" not in b and "top_p" not in b  # Anthropic refuses them with thinking


def test_unknown_reasoning_effort_is_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        body(reasoning_effort="extreme")
    assert caught.value.param == "reasoning_effort"


def test_thinking_is_off_when_a_tool_is_forced() -> None:
    tools = (FunctionTool("f"),)
    for choice in ("required", ForcedFunction("f")):
        b = body(reasoning_effort="low", max_tokens=8192, tools=tools, tool_choice=choice)
        assert "thinking" not in b
    assert "thinking" in body(reasoning_effort="low", max_tokens=8192, tools=tools)


def test_thinking_is_off_inside_an_open_tool_loop() -> None:
    loop = (user("go"), FunctionCall("toolu_1", "f", "{}"), FunctionCallOutput("toolu_1", "ok"))
    assert "thinking" not in body(reasoning_effort="low", max_tokens=8192, input=loop)
    closed = (*loop, assistant("done"), user("again"))
    assert "thinking" in body(reasoning_effort="low", max_tokens=8192, input=closed)


def test_body_is_json_serialisable() -> None:
    b = body(tools=(FunctionTool("f", parameters={"type": "object"}),))
    assert orjson.loads(orjson.dumps(b)) == b


def test_anthropic_service_tier_and_speed_are_sent_openai_tiers_are_not() -> None:
    sent = body(service_tier="standard_only", speed="fast")
    assert (sent["service_tier"], sent["speed"]) == ("standard_only", "fast")
    assert "service_tier" not in body(service_tier="priority")
    assert "speed" not in body() and "service_tier" not in body()
