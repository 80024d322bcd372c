from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.amounts import MAX_TOKENS
from gateway.dialects.chat_parse import (
    ChatRequest,
    _checked_stream,
    _stream,
    parse_chat_request,
)
from gateway.errors import InvalidRequest
from gateway.invocation import (
    FilePart,
    ForcedFunction,
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    ImagePart,
    Message,
    ResponseFormat,
    Sampling,
    TextPart,
)


def body(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    base.update(fields)
    return base


def parse(**fields: Any) -> ChatRequest:
    return parse_chat_request(body(**fields))


def error(raw: object) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(raw)
    assert info.value.status == 400
    return info.value


def param(**fields: Any) -> str | None:
    return error(body(**fields)).param


def test_minimal_request() -> None:
    chat = parse()
    inv = chat.invocation
    assert inv.agent == "echo"
    assert inv.input == (Message("user", (TextPart("hi"),)),)
    assert (inv.stream, chat.include_usage) == (False, False)
    assert inv.tools == () and inv.tool_choice is None and inv.response_format is None
    assert inv.sampling == Sampling()
    assert inv.max_output_tokens is None and inv.metadata == {}


def test_every_role() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
        {"role": "user", "content": "question"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "again", "name": "bob"},
    ]
    inv = parse(messages=messages).invocation
    assert inv.input == (
        Message("system", (TextPart("be brief"),)),
        Message("developer", (TextPart("dev"),)),
        Message("user", (TextPart("question"),)),
        Message("assistant", (TextPart("answer"),)),
        Message("user", (TextPart("again"),)),
    )


def test_user_content_parts() -> None:
    content = [
        {"type": "text", "text": "look at "},
        {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {
            "type": "file",
            "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
        },
        {"type": "file", "file": {"file_id": "file-123"}},
        {"type": "text", "text": "these"},
    ]
    (message,) = parse(messages=[{"role": "user", "content": content}]).invocation.input
    assert message == Message(
        "user",
        (
            TextPart("look at "),
            ImagePart("https://x/cat.png", "low"),
            ImagePart("data:image/png;base64,AAAA"),
            FilePart(filename="a.pdf", data="data:application/pdf;base64,JVBE"),
            FilePart(file_id="file-123"),
            TextPart("these"),
        ),
    )
    assert isinstance(message, Message) and message.text == "look at these"


def test_assistant_tool_calls_and_tool_results() -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "w", "arguments": '{"c":"P"}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "t", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "12:00"}]},
    ]
    inv = parse(messages=messages).invocation
    assert inv.input[1:] == (
        FunctionCall("call_1", "w", '{"c":"P"}'),
        FunctionCall("call_2", "t", "{}"),
        FunctionCallOutput("call_1", "sunny"),
        FunctionCallOutput("call_2", "12:00"),
    )


def test_assistant_text_and_tool_call() -> None:
    msg = {
        "role": "assistant",
        "content": "let me check",
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}],
    }
    inv = parse(messages=[{"role": "user", "content": "q"}, msg]).invocation
    assert inv.input[1:] == (
        Message("assistant", (TextPart("let me check"),)),
        FunctionCall("c", "f", ""),
    )


def test_tools() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "d",
                "parameters": schema,
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "bare"}},
    ]
    inv = parse(tools=tools, parallel_tool_calls=False).invocation
    assert inv.tools == (FunctionTool("weather", "d", schema, True), FunctionTool("bare"))
    assert inv.parallel_tool_calls is False


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ({"type": "function", "function": {"name": "weather"}}, ForcedFunction("weather")),
        (None, None),
    ],
)
def test_tool_choice(raw: object, expected: object) -> None:
    assert parse(tool_choice=raw).invocation.tool_choice == expected


def test_sampling() -> None:
    inv = parse(
        temperature=0.5, top_p=1, presence_penalty=-2, frequency_penalty=2, seed=42, stop="END"
    ).invocation
    assert inv.sampling == Sampling(0.5, 1.0, -2.0, 2.0, 42, ("END",))
    assert isinstance(inv.sampling.top_p, float)
    assert parse(stop=["a", "b", "c", "d"]).invocation.sampling.stop == ("a", "b", "c", "d")
    assert parse(stop=None).invocation.sampling.stop == ()


def test_max_tokens_and_max_completion_tokens() -> None:
    assert parse(max_tokens=10).invocation.max_output_tokens == 10
    assert parse(max_completion_tokens=20).invocation.max_output_tokens == 20
    both = parse(max_tokens=10, max_completion_tokens=20).invocation
    assert both.max_output_tokens == 20  # the newer field wins


def test_logprobs_reach_the_invocation() -> None:
    inv = parse(logprobs=True, top_logprobs=5).invocation
    assert (inv.logprobs, inv.top_logprobs) == (True, 5)
    inv = parse().invocation
    assert (inv.logprobs, inv.top_logprobs) == (False, None)
    assert parse(logprobs=False).invocation.logprobs is False


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"top_logprobs": 2}, "top_logprobs"),  # OpenAI requires logprobs: true with it
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
        ({"logprobs": "yes"}, "logprobs"),
    ],
)
def test_bad_logprobs(fields: dict[str, Any], expected: str) -> None:
    assert param(**fields) == expected


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_an_output_cap_beyond_the_token_bound_is_a_400(field: str) -> None:
    """Metering holds its cap in Redis, whose scripts are exact only to 2**53."""
    assert parse(**{field: MAX_TOKENS}).invocation.max_output_tokens == MAX_TOKENS
    with pytest.raises(InvalidRequest) as info:
        parse(**{field: MAX_TOKENS + 1})
    assert info.value.param == field


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"type": "text"}, ResponseFormat("text")),
        ({"type": "json_object"}, ResponseFormat("json_object")),
        (
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "out",
                    "schema": {"type": "object"},
                    "strict": True,
                    "description": "the output",
                },
            },
            ResponseFormat("json_schema", "out", {"type": "object"}, True, "the output"),
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "bare"}},
            ResponseFormat("json_schema", "bare"),
        ),
    ],
)
def test_response_format(raw: object, expected: ResponseFormat) -> None:
    assert parse(response_format=raw).invocation.response_format == expected


def test_stream_options_include_usage() -> None:
    chat = parse(stream=True, stream_options={"include_usage": True})
    assert chat.invocation.stream and chat.include_usage
    assert not parse(stream=True, stream_options={"include_usage": False}).include_usage
    assert not parse(stream=True).include_usage
    # include_usage only means something for a stream
    assert not parse(stream=False, stream_options={"include_usage": True}).include_usage


def test_other_fields() -> None:
    inv = parse(
        reasoning_effort="low", metadata={"k": "v"}, user="u", n=1, logprobs=False
    ).invocation
    assert inv.reasoning_effort == "low"
    assert inv.metadata == {"k": "v"}


def test_unknown_fields_are_ignored() -> None:
    assert parse(some_future_field={"x": 1}).invocation.agent == "echo"


def test_metadata_limits() -> None:
    assert len(parse(metadata={f"k{i}": "v" for i in range(16)}).invocation.metadata) == 16
    assert param(metadata={f"k{i}": "v" for i in range(17)}) == "metadata"
    assert param(metadata={"k" * 65: "v"}) == "metadata"
    assert parse(metadata={"k" * 64: "v" * 512}).invocation.metadata
    assert param(metadata={"k": "v" * 513}) == "metadata.k"
    assert param(metadata={"k": 1}) == "metadata.k"
    assert param(metadata=[]) == "metadata"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([], "body"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "", "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": 3, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": "hi"}, "messages"),
    ],
)
def test_bad_bodies(raw: object, expected: str) -> None:
    assert error(raw).param == expected


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([{"role": "user", "content": "x"}, "hi"], "messages[1]"),
        ([{"role": "user", "content": "x"}, {"content": "x"}], "messages[1].role"),
        ([{"role": "user", "content": "x"}, {"role": "robot", "content": "x"}], "messages[1].role"),
        ([{"role": "user", "content": "x"}, {"role": "user"}], "messages[1].content"),
        (
            [{"role": "user", "content": "x"}, {"role": "user", "content": None}],
            "messages[1].content",
        ),
        ([{"role": "user", "content": "x"}, {"role": "user", "content": 5}], "messages[1].content"),
        ([{"role": "user", "content": [{"type": "audio"}]}], "messages[0].content[0].type"),
        ([{"role": "user", "content": [{"text": "x"}]}], "messages[0].content[0].type"),
        ([{"role": "user", "content": ["x"]}], "messages[0].content[0]"),
        (
            [{"role": "user", "content": [{"type": "text", "text": 1}]}],
            "messages[0].content[0].text",
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            "messages[0].content[0].image_url.url",
        ),
        (
            [{"role": "user", "content": [{"type": "file", "file": "x"}]}],
            "messages[0].content[0].file",
        ),
        (
            [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}],
            "messages[0].content[0].type",
        ),
        ([{"role": "assistant"}], "messages[0].content"),
        ([{"role": "tool", "content": "x"}], "messages[0].tool_call_id"),
        ([{"role": "assistant", "tool_calls": {}}], "messages[0].tool_calls"),
        (
            [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]}],
            "messages[0].tool_calls[0].function.name",
        ),
        (
            [{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}],
            "messages[0].tool_calls[0].id",
        ),
        (
            [{"role": "assistant", "tool_calls": [{"id": "c"}]}],
            "messages[0].tool_calls[0].function",
        ),
        (
            [
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}],
                }
            ],
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)
def test_bad_messages(messages: list[object], expected: str) -> None:
    assert param(messages=messages) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"top_p": 1.1}, "top_p"),
        ({"presence_penalty": -3}, "presence_penalty"),
        ({"frequency_penalty": 3}, "frequency_penalty"),
        ({"seed": 1.5}, "seed"),
        ({"n": 2}, "n"),
        ({"n": 0}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": "9"}, "max_completion_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": []}, "stream_options"),
        ({"stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
        ({"parallel_tool_calls": "no"}, "parallel_tool_calls"),
        ({"reasoning_effort": 1}, "reasoning_effort"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": ["a", 1]}, "stop[1]"),
        ({"stop": 5}, "stop"),
        ({"tools": {}}, "tools"),
        ({"tools": ["x"]}, "tools[0]"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "function"}]}, "tools[0].function"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "function", "function": {"name": 1}}]}, "tools[0].function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
            "tools[0].function.parameters",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "strict": "y"}}]},
            "tools[0].function.strict",
        ),
        ({"tool_choice": "any"}, "tool_choice"),
        ({"tool_choice": {"type": "function"}}, "tool_choice.function"),
        ({"tool_choice": {"type": "function", "function": {}}}, "tool_choice.function.name"),
        ({"response_format": "json"}, "response_format"),
        ({"response_format": {}}, "response_format.type"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format.json_schema.name",
        ),
    ],
)
def test_bad_fields(fields: dict[str, Any], expected: str) -> None:
    assert param(**fields) == expected


def test_error_message_names_the_field() -> None:
    err = error(body(temperature=3))
    assert "temperature" in err.message
    assert err.type == "invalid_request_error"


def test_identity_and_caching_fields_reach_the_invocation() -> None:
    from gateway.dialects.chat_parse import parse_chat_request

    body = {
        "model": "a",
        "messages": [{"role": "user", "content": "x"}],
        "user": "u1",
        "safety_identifier": "s1",
        "prompt_cache_key": "k1",
        "service_tier": "flex",
    }
    inv = parse_chat_request(body).invocation
    assert (inv.user, inv.safety_identifier, inv.prompt_cache_key, inv.service_tier) == (
        "u1",
        "s1",
        "k1",
        "flex",
    )


def outcome(raw: dict[str, Any]) -> object:
    try:
        return parse_chat_request(raw)
    except InvalidRequest as error:
        return (error.status, error.message, error.param, error.code)


PLAIN_BODIES: list[dict[str, Any]] = [
    body(),
    body(stream=True),
    body(stream=False, stream_options={"include_usage": True}),
    body(stream=True, stream_options={"include_usage": True}),
    body(stream=True, stream_options={"include_usage": False, "other": 1}),
    body(stream=None, stream_options=None),
    body(stream="yes"),
    body(stream=True, stream_options=[]),
    body(stream=True, stream_options={"include_usage": "yes"}),
    body(messages=[{"role": "user", "content": ""}, {"role": "user", "content": "again"}]),
    body(messages=[{"role": "user", "content": [{"type": "text", "text": "a part"}]}]),
    body(messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]),
    body(messages=[{"role": "user", "content": None}]),
    body(messages=[{"role": "user"}]),
    body(messages=[{"role": "user", "content": 5}]),
    body(messages=[{"role": "users", "content": "hi"}]),
    body(messages=["hi"]),
]


@pytest.mark.parametrize("raw", PLAIN_BODIES)
def test_a_plain_request_parses_as_through_every_field(raw: dict[str, Any]) -> None:
    # An unknown field takes the parser off its path for plain requests: same outcome.
    assert outcome(raw) == outcome({**raw, "an_unknown_field": 1})


class _Other(dict[str, Any]):
    """A message that is not exactly a dict: parsed without the user-message shortcut."""


@pytest.mark.parametrize("raw", PLAIN_BODIES)
def test_a_user_message_parses_as_through_every_check(raw: dict[str, Any]) -> None:
    messages = [_Other(m) if isinstance(m, dict) else m for m in raw["messages"]]
    assert outcome(raw) == outcome({**raw, "messages": messages})


_ABSENT = object()
_VALUES = st.sampled_from([_ABSENT, None, True, False, 0, 1, 1.0, "true", "", [], [True]])
_OPTIONS = st.one_of(
    _VALUES,
    st.dictionaries(
        st.sampled_from(["include_usage", "other"]), st.sampled_from([None, True, False, 1, "x"])
    ),
)


def _outcome(read: Any, req: dict[str, Any]) -> object:
    try:
        return read(req)
    except InvalidRequest as exc:
        return (type(exc), exc.message, exc.param)


@given(stream=_VALUES, options=_OPTIONS)
def test_the_stream_fields_read_at_once_as_each_checked_in_turn(
    stream: object, options: object
) -> None:
    req = {
        name: value
        for name, value in (("stream", stream), ("stream_options", options))
        if value is not _ABSENT
    }
    assert _outcome(_stream, req) == _outcome(_checked_stream, req)
