from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from gateway_plugins.backends import openai_wire
from gateway_plugins.backends.http import json_object
from gateway_plugins.backends.openai_wire import (
    ChunkParser,
    chat_body,
    completion_as_chunk,
    usage_from,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk

from gateway.errors import UpstreamError
from gateway.events import (
    Completed,
    Event,
    Failed,
    ReasoningDelta,
    TextDelta,
    TokenLogprob,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    TopLogprob,
    Usage,
)
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
from gateway.sse import ServerSentEvent
from tests.conftest import invocation

# chat_body


def test_minimal_body() -> None:
    assert chat_body(invocation("hi"), "gpt-4o-mini") == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_every_field_is_mapped() -> None:
    schema = {"type": "object", "properties": {"c": {"type": "string"}}}
    inv = invocation(
        instructions="Be brief.",
        tools=(FunctionTool("w", "weather", schema, True), FunctionTool("bare")),
        tool_choice="required",
        parallel_tool_calls=False,
        sampling=Sampling(0.2, 0.9, 0.1, -0.1, 7, ("END", "STOP")),
        max_output_tokens=64,
        response_format=ResponseFormat("json_schema", "out", {"type": "object"}, True, "d"),
        reasoning_effort="low",
        service_tier="flex",
        safety_identifier="s1",
        prompt_cache_key="k1",
        user="u1",
        metadata={"not": "forwarded"},
    )
    body = chat_body(inv, "m")
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "w",
                "description": "weather",
                "parameters": schema,
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "bare"}},
    ]
    assert body["tool_choice"] == "required"
    assert body["parallel_tool_calls"] is False
    assert (body["temperature"], body["top_p"]) == (0.2, 0.9)
    assert (body["presence_penalty"], body["frequency_penalty"]) == (0.1, -0.1)
    assert (body["seed"], body["stop"], body["max_completion_tokens"]) == (7, ["END", "STOP"], 64)
    assert "max_tokens" not in body
    assert body["reasoning_effort"] == "low"
    assert [body[k] for k in ("service_tier", "safety_identifier", "prompt_cache_key", "user")] == [
        "flex",
        "s1",
        "k1",
        "u1",
    ]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "out",
            "schema": {"type": "object"},
            "strict": True,
            "description": "d",
        },
    }
    assert "metadata" not in body
    orjson.dumps(body)  # it must be serialisable as is


def test_the_output_cap_field_is_chosen_by_the_backend() -> None:
    inv = invocation(max_output_tokens=64)
    assert chat_body(inv, "m")["max_completion_tokens"] == 64
    body = chat_body(inv, "m", "max_tokens")
    assert body["max_tokens"] == 64 and "max_completion_tokens" not in body


def test_logprobs_are_asked_for_only_with_logprobs() -> None:
    body = chat_body(invocation(logprobs=True, top_logprobs=3), "m")
    assert (body["logprobs"], body["top_logprobs"]) == (True, 3)
    body = chat_body(invocation(logprobs=True), "m")
    assert body["logprobs"] is True and "top_logprobs" not in body
    # Open Responses' top_logprobs alone is only echoed: OpenAI refuses it without logprobs.
    assert "top_logprobs" not in chat_body(invocation(top_logprobs=3), "m")


def _optional_fields_as_before(inv: Any, max_tokens_field: str) -> dict[str, object]:
    """The optional fields as ``chat_body`` picked them until round eleven: all fifteen
    in a dict, those that are None left out (the reference for the test below)."""
    s = inv.sampling
    optional = {
        "parallel_tool_calls": inv.parallel_tool_calls if inv.tools else None,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "presence_penalty": s.presence_penalty,
        "frequency_penalty": s.frequency_penalty,
        "seed": s.seed,
        "stop": list(s.stop) or None,
        max_tokens_field: inv.max_output_tokens,
        "reasoning_effort": inv.reasoning_effort,
        "logprobs": True if inv.logprobs else None,
        "top_logprobs": inv.top_logprobs if inv.logprobs else None,
        "service_tier": inv.service_tier,
        "safety_identifier": inv.safety_identifier,
        "prompt_cache_key": inv.prompt_cache_key,
        "user": inv.user,
    }
    return {k: v for k, v in optional.items() if v is not None}


_maybe_text = st.none() | st.text(max_size=3)
_maybe_number = st.none() | st.floats(-2, 2)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "tools": st.sampled_from([(), (FunctionTool("w"),)]),
            "parallel_tool_calls": st.none() | st.booleans(),
            "max_output_tokens": st.none() | st.integers(1, 100),
            "reasoning_effort": st.none() | st.sampled_from(["low", "high"]),
            "logprobs": st.booleans(),
            "top_logprobs": st.none() | st.integers(0, 20),
            "service_tier": _maybe_text,
            "safety_identifier": _maybe_text,
            "prompt_cache_key": _maybe_text,
            "user": _maybe_text,
        }
    ),
    st.builds(
        Sampling,
        temperature=_maybe_number,
        top_p=_maybe_number,
        presence_penalty=_maybe_number,
        frequency_penalty=_maybe_number,
        seed=st.none() | st.integers(0, 10),
        stop=st.lists(st.text(max_size=2), max_size=2).map(tuple),
    ),
    st.sampled_from(openai_wire.MAX_TOKENS_FIELDS),
)
def test_optional_fields_are_those_set_in_their_order(
    fields: dict[str, Any], sampling: Sampling, max_tokens_field: str
) -> None:
    inv = invocation(sampling=sampling, **fields)
    body = chat_body(inv, "m", max_tokens_field)
    head = ["model", "messages", "stream", "stream_options"] + ["tools"] * bool(inv.tools)
    assert list(body)[: len(head)] == head
    optional = {k: v for k, v in body.items() if k not in head}
    expected = _optional_fields_as_before(inv, max_tokens_field)
    assert list(optional.items()) == list(expected.items())  # the same, in the same order


def test_unset_fields_are_left_out() -> None:
    body = chat_body(invocation(parallel_tool_calls=True), "m")
    # parallel_tool_calls without tools is rejected by OpenAI: only sent with tools
    assert set(body) == {"model", "messages", "stream", "stream_options"}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        (ForcedFunction("w"), {"type": "function", "function": {"name": "w"}}),
    ],
)
def test_tool_choice(choice: Any, expected: object) -> None:
    body = chat_body(invocation(tools=(FunctionTool("w"),), tool_choice=choice), "m")
    assert body["tool_choice"] == expected


@pytest.mark.parametrize("kind", ["text", "json_object"])
def test_simple_response_formats(kind: Any) -> None:
    body = chat_body(invocation(response_format=ResponseFormat(kind)), "m")
    assert body["response_format"] == {"type": kind}


def test_json_schema_without_optional_parts() -> None:
    body = chat_body(invocation(response_format=ResponseFormat("json_schema", "n")), "m")
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "n"}}


def call(call_id: str, name: str, arguments: str) -> dict[str, object]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_conversation_with_tool_calls() -> None:
    inv = invocation(
        input=(
            Message("developer", (TextPart("dev note"),)),
            Message("user", (TextPart("weather and time?"),)),
            Reasoning("thinking", "enc"),  # not replayed to a Chat Completions upstream
            FunctionCall("call_1", "weather", '{"city":"Paris"}'),
            FunctionCall("call_2", "time", "{}"),
            FunctionCallOutput("call_1", "sunny"),
            FunctionCallOutput("call_2", "noon"),
            Message("assistant", (TextPart("Let me check more."),)),
            FunctionCall("call_3", "weather", '{"city":"Rome"}'),
            FunctionCallOutput("call_3", "rain"),
            Message("user", (TextPart("thanks"),)),
        )
    )
    messages = chat_body(inv, "m")["messages"]
    assert messages == [
        {"role": "developer", "content": "dev note"},
        {"role": "user", "content": "weather and time?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                call("call_1", "weather", '{"city":"Paris"}'),
                call("call_2", "time", "{}"),
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
        {
            "role": "assistant",
            "content": "Let me check more.",
            "tool_calls": [call("call_3", "weather", '{"city":"Rome"}')],
        },
        {"role": "tool", "tool_call_id": "call_3", "content": "rain"},
        {"role": "user", "content": "thanks"},
    ]


def test_media_parts() -> None:
    inv = invocation(
        input=(
            Message(
                "user",
                (
                    TextPart("see"),
                    ImagePart("https://x/a.png"),
                    ImagePart("data:image/png;base64,AA", "high"),
                    FilePart(filename="f.pdf", data="data:application/pdf;base64,JV"),
                    FilePart(file_id="file-1"),
                ),
            ),
        )
    )
    assert chat_body(inv, "m")["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "see"},
                {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,AA", "detail": "high"},
                },
                {
                    "type": "file",
                    "file": {"filename": "f.pdf", "file_data": "data:application/pdf;base64,JV"},
                },
                {"type": "file", "file": {"file_id": "file-1"}},
            ],
        }
    ]


def test_multi_part_text_is_joined() -> None:
    inv = invocation(input=(Message("user", (TextPart("a"), TextPart("b"))),))
    assert chat_body(inv, "m")["messages"] == [{"role": "user", "content": "ab"}]


# ChunkParser


def chunk(
    delta: Mapping[str, Any] | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    """An OpenAI-shaped chunk (checked against the SDK model, as a real upstream's would be)."""
    body: dict[str, Any] = {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up-model",
        "choices": []
        if delta is None
        else [{"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish}],
    }
    body.update(extra)
    ChatCompletionChunk.model_validate(body)
    return body


def parse(chunks: Iterable[Mapping[str, Any]], *, done: bool = True) -> list[Event]:
    parser = ChunkParser()
    events: list[Event] = []
    for c in chunks:
        events.extend(parser.feed(c))
    events.extend(parser.finish(done=done))
    return events


OPENAI_USAGE = {
    "prompt_tokens": 19,
    "completion_tokens": 10,
    "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 8, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 3,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}


def test_openai_text_stream_with_usage_chunk() -> None:
    chunks = [
        chunk({"role": "assistant", "content": "", "refusal": None}, usage=None),
        chunk({"content": "Hel"}, usage=None),
        chunk({"content": "lo"}, usage=None),
        chunk({}, "stop", usage=None),
        chunk(None, usage=OPENAI_USAGE),
    ]
    assert parse(chunks) == [
        TextDelta("Hel"),
        TextDelta("lo"),
        Usage(input_tokens=19, output_tokens=10, cached_input_tokens=8, reasoning_tokens=3),
        Completed("stop"),
    ]


def test_logprobs_ride_on_their_text_delta() -> None:
    logprobs = {
        "content": [
            {
                "token": "Hel",
                "logprob": -0.5,
                "bytes": [72, 101, 108],
                "top_logprobs": [{"token": "Hi", "logprob": -1, "bytes": None}],
            }
        ],
        "refusal": None,
    }
    chunks = [chunk({"content": "Hel"}), chunk({"content": "lo"}), chunk({}, "stop")]
    chunks[0]["choices"][0]["logprobs"] = logprobs
    ChatCompletionChunk.model_validate(chunks[0])
    assert parse(chunks) == [
        TextDelta(
            "Hel",
            (TokenLogprob("Hel", -0.5, (72, 101, 108), (TopLogprob("Hi", -1.0),)),),
        ),
        TextDelta("lo"),
        Completed("stop"),
    ]
    # A whole completion carries them too.
    completion = {
        "choices": [
            {"message": {"content": "Hello"}, "logprobs": logprobs, "finish_reason": "stop"}
        ]
    }
    [delta] = ChunkParser().feed(completion_as_chunk(completion))
    assert isinstance(delta, TextDelta) and delta.logprobs is not None
    assert delta.logprobs[0].token == "Hel"


@pytest.mark.parametrize(
    "bad",
    [
        {"content": "x"},
        {"content": [{"token": 1, "logprob": -1}]},
        {"content": [{"token": "a", "logprob": "low"}]},
        {"content": [{"token": "a", "logprob": -1, "bytes": ["x"]}]},
        {"content": [{"token": "a", "logprob": -1, "top_logprobs": [{"token": "b"}]}]},
    ],
)
def test_malformed_logprobs_are_the_upstreams_fault(bad: dict[str, Any]) -> None:
    data = {"choices": [{"delta": {"content": "a"}, "logprobs": bad}]}
    with pytest.raises(UpstreamError):
        ChunkParser().feed(data)


def test_openai_parallel_tool_calls() -> None:
    chunks = [
        chunk(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_A",
                        "type": "function",
                        "function": {"name": "weather", "arguments": ""},
                    }
                ],
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"P"}'}}]}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_B",
                        "type": "function",
                        "function": {"name": "time", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
        chunk(None, usage={"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}),
    ]
    assert parse(chunks) == [
        ToolCallStarted("call_A", "weather"),
        ToolCallArgumentsDelta("call_A", '{"ci'),
        ToolCallArgumentsDelta("call_A", 'ty":"P"}'),
        ToolCallStarted("call_B", "time"),
        ToolCallArgumentsDelta("call_B", "{}"),
        Usage(5, 7),
        Completed("tool_calls"),
    ]


def test_vllm_tool_call_in_one_chunk_with_text_before() -> None:
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Checking."}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "chatcmpl-tool-1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a": 1}'},
                    }
                ]
            }
        ),
        chunk({"content": ""}, "tool_calls"),
        chunk(None, usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}),
    ]
    assert parse(chunks) == [
        TextDelta("Checking."),
        ToolCallStarted("chatcmpl-tool-1", "f"),
        ToolCallArgumentsDelta("chatcmpl-tool-1", '{"a": 1}'),
        Usage(1, 2),
        Completed("tool_calls"),
    ]


def test_tool_call_without_id_gets_one() -> None:
    chunks = [
        {
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": 2, "function": {"name": "f"}}]}}
            ]
        },
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "function_call"}]},
    ]
    assert parse(chunks) == [ToolCallStarted("call_2", "f"), Completed("tool_calls")]


def test_tool_calls_without_index_are_told_apart_by_id() -> None:
    def call(**fields: Any) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": {"tool_calls": [fields]}}]}

    chunks = [
        call(id="a", function={"name": "f", "arguments": "{"}),
        call(function={"arguments": "}"}),
        call(id="b", function={"name": "g", "arguments": "[]"}),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    assert parse(chunks) == [
        ToolCallStarted("a", "f"),
        ToolCallArgumentsDelta("a", "{"),
        ToolCallArgumentsDelta("a", "}"),
        ToolCallStarted("b", "g"),
        ToolCallArgumentsDelta("b", "[]"),
        Completed("tool_calls"),
    ]


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_vllm_reasoning(field: str) -> None:
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({field: "Let me "}),
        chunk({field: "think.", "content": None}),
        chunk({"content": "42"}),
        chunk({}, "stop"),
    ]
    assert parse(chunks) == [
        ReasoningDelta("Let me "),
        ReasoningDelta("think."),
        TextDelta("42"),
        Completed("stop"),
    ]


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("stop", "stop"), ("length", "length"), ("content_filter", "content_filter"), ("eos", "stop")],
)
def test_finish_reasons(reason: str, expected: str) -> None:
    assert parse([{"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}]) == [
        Completed(expected)  # type: ignore[arg-type]
    ]


def test_usage_on_the_last_content_chunk() -> None:
    # Some servers put usage on the finishing chunk instead of a separate one.
    last = chunk(
        {"content": "x"},
        "stop",
        usage={"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
    )
    assert parse([last]) == [TextDelta("x"), Usage(2, 1), Completed("stop")]


def test_error_chunk_raises_upstream_error() -> None:
    parser = ChunkParser()
    list(parser.feed(chunk({"content": "par"})))
    with pytest.raises(UpstreamError) as info:
        list(parser.feed({"error": {"message": "model overloaded", "type": "server_error"}}))
    assert "model overloaded" in info.value.message
    with pytest.raises(UpstreamError, match="plain text"):
        list(ChunkParser().feed({"error": "plain text"}))


def test_stream_cut_without_finish_reason_fails() -> None:
    events = parse([chunk({"content": "half"})], done=False)
    assert events[0] == TextDelta("half")
    assert isinstance(events[-1], Failed) and isinstance(events[-1].error, UpstreamError)
    assert len(events) == 2


def test_stream_cut_after_finish_reason_completes() -> None:
    events = parse([chunk({"content": "all"}), chunk({}, "stop")], done=False)
    assert events == [TextDelta("all"), Completed("stop")]


def test_done_without_finish_reason_completes() -> None:
    assert parse([chunk({"content": "x"})], done=True) == [TextDelta("x"), Completed("stop")]


def test_usage_is_reported_before_a_failure() -> None:
    usage = {"prompt_tokens": 4, "completion_tokens": 0, "total_tokens": 4}
    events = parse([chunk(None, usage=usage)], done=False)
    assert events[0] == Usage(4, 0) and isinstance(events[1], Failed)


@pytest.mark.parametrize(
    "bad",
    [
        {"choices": ["x"]},
        {"choices": [{"delta": "x"}]},
        {"choices": [{"delta": {"tool_calls": ["x"]}}]},
    ],
)
def test_malformed_chunks_raise(bad: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError):
        list(ChunkParser().feed(bad))


def test_keep_alive_chunks_are_ignored() -> None:
    assert parse([{"choices": []}, {"object": "x"}, chunk({}), chunk({}, "stop")]) == [Completed()]


def test_usage_from_ignores_nonsense() -> None:
    assert (
        usage_from({"prompt_tokens": -1, "completion_tokens": "3", "prompt_tokens_details": None})
        == Usage()
    )
    assert usage_from({"prompt_tokens": True}) == Usage()
    # Details that are not objects (once an AttributeError: a 502 and a breaker failure).
    weird = {"prompt_tokens": 4, "prompt_tokens_details": 5, "completion_tokens_details": "x"}
    assert usage_from(weird) == Usage(input_tokens=4)
    assert usage_from({"prompt_tokens_details": [1], "completion_tokens_details": True}) == Usage()
    # Details given as a mapping that is not a dict (a caller's own) are read as one.
    details = MappingProxyType({"cached_tokens": 2})
    assert usage_from({"prompt_tokens": 4, "prompt_tokens_details": details}) == Usage(
        input_tokens=4, cached_input_tokens=2
    )


def test_empty_finish_reason_means_not_finished() -> None:
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": ""}]},
        {"choices": [{"index": 0, "delta": {"content": "b"}, "finish_reason": "stop"}]},
    ]
    assert parse(chunks, done=False) == [TextDelta("a"), TextDelta("b"), Completed("stop")]
    assert isinstance(parse(chunks[:1], done=False)[-1], Failed)


def test_a_file_by_url_cannot_go_to_a_chat_upstream() -> None:
    from gateway.errors import InvalidRequest
    from gateway.invocation import FilePart, Message

    inv = invocation(input=(Message("user", (FilePart(url="https://x/a.pdf"),)),))
    with pytest.raises(InvalidRequest):
        chat_body(inv, "m")


# completion_as_chunk: a non-streamed answer gives the events its stream would


def whole(completion: Mapping[str, Any]) -> list[Event]:
    parser = ChunkParser()
    return [*parser.feed(completion_as_chunk(completion)), *parser.finish(done=True)]


def test_a_completion_with_reasoning_text_and_tool_calls() -> None:
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "reasoning_content": "Think.",
                    "content": "Checking.",
                    "tool_calls": [
                        {"id": "call_A", "type": "function",
                         "function": {"name": "weather", "arguments": '{"city":"P"}'}},
                        {"id": "call_B", "type": "function",
                         "function": {"name": "time", "arguments": "{}"}},
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": OPENAI_USAGE,
    }  # fmt: skip
    assert whole(completion) == [
        ReasoningDelta("Think."),
        TextDelta("Checking."),
        ToolCallStarted("call_A", "weather"),
        ToolCallArgumentsDelta("call_A", '{"city":"P"}'),
        ToolCallStarted("call_B", "time"),
        ToolCallArgumentsDelta("call_B", "{}"),
        Usage(input_tokens=19, output_tokens=10, cached_input_tokens=8, reasoning_tokens=3),
        Completed("tool_calls"),
    ]


def test_a_completion_error_or_malformed_is_the_upstreams_fault() -> None:
    with pytest.raises(UpstreamError, match="overloaded"):
        whole({"error": {"message": "overloaded"}})
    with pytest.raises(UpstreamError):
        whole({"choices": ["not an object"]})
    with pytest.raises(UpstreamError):
        whole({"choices": [{"message": "text", "finish_reason": "stop"}]})
    assert whole({"choices": []}) == [Completed("stop")]


# feed_data: text chunks read by their shape, exactly as feed reads them

CHUNK_SHAPES: list[dict[str, Any]] = [
    {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"},
    {"id": "x", "system_fingerprint": "fp", "usage": None},
    {"obfuscation": "varies"},  # OpenAI: a field that changes from chunk to chunk
    {"model": "a"},  # the text "a" also appears elsewhere in the chunk
]
TEXTS = st.one_of(
    st.sampled_from(["a", " the", "", '"', "\\", "é", "\t", "\u2028", "gateway-shape-probe"]),
    st.text(max_size=6),
)


@st.composite
def chunk_stream(draw: st.DrawFn, most: int = 12, kinds: tuple[str, ...] = ()) -> list[str]:
    """The data of a stream's chunks (up to ``most``): mostly text deltas of one shape,
    some others, some text escaped as an upstream may escape it, and some broken (one
    kind in ``kinds`` when given)."""
    shape = draw(st.sampled_from(CHUNK_SHAPES))
    chunks = []
    for _ in range(draw(st.integers(1, most))):
        text = draw(TEXTS)
        extra = dict(shape)
        if "obfuscation" in extra:
            extra["obfuscation"] = draw(st.sampled_from(["a", "bb"]))
        choice: dict[str, Any] = {"index": 0, "delta": {"content": text}, "finish_reason": None}
        kind = draw(
            st.sampled_from(
                kinds
                or ("text", "text", "text", "finish", "usage", "logprobs", "ascii", "raw", "cut")
            )
        )
        if kind == "logprobs":  # a text chunk in every way but its logprobs
            choice["logprobs"] = {"content": [{"token": text, "logprob": -0.5, "bytes": None}]}
        if kind == "finish":
            choice["finish_reason"] = draw(st.sampled_from(["stop", "length"]))
        chunk = {**extra, "choices": [choice]}
        if kind == "usage":
            chunk["usage"] = {"prompt_tokens": 3, "completion_tokens": draw(st.integers(1, 3))}
        data = orjson.dumps(chunk).decode()
        if kind == "ascii":  # escapes where orjson would write the character itself
            data = json.dumps(chunk, separators=(",", ":"))
        elif kind == "raw":  # a control character left unescaped: not JSON
            data = data.replace("\\t", "\t")
        elif kind == "cut":
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(st.sampled_from(["", '"', "\\", "}"])) + data[at + 1 :]
        chunks.append(data)
    return chunks


def _read(parse: Any, data: str) -> object:
    try:
        return parse(data)
    except UpstreamError as exc:
        return type(exc)


@settings(max_examples=300, deadline=None)
@given(chunk_stream())
def test_feed_data_reads_every_chunk_as_feed_does(chunks: list[str]) -> None:
    fast, full = ChunkParser(), ChunkParser()
    for data in chunks:
        expected = _read(lambda d: full.feed(json_object(d)), data)
        assert _read(fast.feed_data, data) == expected, data
    assert (fast.usage, fast.finish_reason) == (full.usage, full.finish_reason)


@settings(max_examples=300, deadline=None)
@given(chunk_stream(), st.integers(0, 12), st.integers(1, 5))
def test_feed_frames_reads_a_read_as_feed_data_reads_its_chunks(
    chunks: list[str], done_at: int, per_read: int
) -> None:
    frames = [ServerSentEvent(data) for data in chunks]
    frames.insert(min(done_at, len(frames)), ServerSentEvent("[DONE]"))
    frames.insert(0, ServerSentEvent('{"x":1}', "named"))  # not a chunk: skipped
    fast, full = ChunkParser(), ChunkParser()
    expected: list[object] = []
    for frame in frames:
        if frame.data == "[DONE]":
            break
        if frame.event == "message":
            expected.append(_read(full.feed_data, frame.data))
    got: list[object] = []
    for start in range(0, len(frames), per_read):
        events: list[Event] = []
        try:
            done = fast.feed_frames(frames[start : start + per_read], events)
        except UpstreamError as exc:
            got.extend(events)  # the events of the chunks before it still count
            got.append(type(exc))
            break
        got.extend(events)
        if done:
            break
    flat: list[object] = []
    for item in expected:
        if isinstance(item, list):
            flat.extend(item)
        else:
            flat.append(item)
            break
    assert got == flat
    if not any(isinstance(item, type) for item in flat):
        assert (fast.usage, fast.finish_reason) == (full.usage, full.finish_reason)


@settings(max_examples=300, deadline=None)
@given(chunk_stream(), st.integers(0, 12), st.integers(1, 5))
def test_feed_texts_reads_a_read_as_feed_frames_reads_its_frames(
    chunks: list[str], done_at: int, per_read: int
) -> None:
    texts = list(chunks)
    texts.insert(min(done_at, len(texts)), "[DONE]")
    fast, frames = ChunkParser(), ChunkParser()
    for start in range(0, len(texts), per_read):
        read = texts[start : start + per_read]
        got: list[Event] = []
        expected: list[Event] = []
        try:
            expected_done = frames.feed_frames([ServerSentEvent(t) for t in read], expected)
        except UpstreamError as exc:
            with pytest.raises(UpstreamError, match=re.escape(exc.message)):
                fast.feed_texts(read, got)
            assert got == expected  # the events of the chunks before it still count
            return
        assert fast.feed_texts(read, got) == expected_done
        assert got == expected
        assert (fast.usage, fast.finish_reason) == (frames.usage, frames.finish_reason)
        if expected_done:
            return


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        chunk_stream(most=40),
        chunk_stream(most=40, kinds=("text",) * 20 + ("finish", "usage", "logprobs", "cut")),
    ),
    st.integers(0, 40),
    st.sampled_from([1, 19, 20, 21, 40]),
)
def test_feed_texts_reads_a_long_read_as_feed_data_reads_its_chunks(
    chunks: list[str], done_at: int, per_read: int
) -> None:
    """A read of many chunks, text and other chunks mixed (its text chunks read inline):
    the same events, in the same order, as each chunk's own ``feed_data``, errors too."""
    texts = list(chunks)
    texts.insert(min(done_at, len(texts)), "[DONE]")
    fast, one_by_one = ChunkParser(), ChunkParser()
    for start in range(0, len(texts), per_read):
        read = texts[start : start + per_read]
        expected: list[Event] = []
        failure: UpstreamError | None = None
        expected_done = False
        for data in read:
            if data == "[DONE]":
                expected_done = True
                break
            try:
                expected.extend(one_by_one.feed_data(data))
            except UpstreamError as exc:
                failure = exc
                break
        got: list[Event] = []
        if failure is not None:
            with pytest.raises(UpstreamError, match=re.escape(failure.message)):
                fast.feed_texts(read, got)
            assert got == expected  # the events of the chunks before it still count
            return
        assert fast.feed_texts(read, got) == expected_done
        assert got == expected
        assert [type(event) for event in got] == [type(event) for event in expected]
        assert (fast.usage, fast.finish_reason) == (one_by_one.usage, one_by_one.finish_reason)
        if expected_done:
            return


def _shape_by_probe(data: str, text: str) -> tuple[str, str] | None:
    """How ``_text_shape`` proved a shape until round eleven (the reference below): the
    data with a marker for its text, parsed by a fresh parser, is one text delta of the
    marker, with no usage and no finish reason."""
    quoted = f'"{text}"'
    if not openai_wire._plain(text) or data.count(quoted) != 1 or openai_wire._PROBE in data:
        return None
    start = data.index(quoted) + 1
    head, tail = data[:start], data[start + len(text) :]
    probe = ChunkParser()
    try:
        events = probe.feed(json_object(head + openai_wire._PROBE + tail))
    except UpstreamError:
        return None
    if events != [TextDelta(openai_wire._PROBE)] or probe.usage is not None:
        return None
    return None if probe.finish_reason else (head, tail)


_SHAPE_TWISTS = st.sampled_from(
    [
        {},
        {"usage": {"prompt_tokens": 1}},
        {"usage": None},
        {"finish_reason": "stop"},
        {"finish_reason": ""},
        {"tool_calls": []},
        {"tool_calls": [{"index": 0, "function": {"arguments": ""}}]},
        {"reasoning_content": "r"},
        {"logprobs": {"content": None}},
        {"logprobs": {"content": [{"token": "t", "logprob": -1.0}]}},
        {"id": "gateway-shape-probe"},
        {"second": True},  # a second choice
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(CHUNK_SHAPES),
    TEXTS,
    _SHAPE_TWISTS,
    st.sampled_from(["orjson", "ascii", "key"]),
)
def test_a_text_shape_is_learnt_as_the_probe_of_a_fresh_parser_learnt_it(
    extra: dict[str, Any], text: str, twist: dict[str, Any], writing: str
) -> None:
    choice: dict[str, Any] = {"index": 0, "delta": {"content": text}, "finish_reason": None}
    chunk: dict[str, Any] = {**extra, "choices": [choice]}
    for key in ("finish_reason", "logprobs"):
        if key in twist:
            choice[key] = twist[key]
    for key in ("tool_calls", "reasoning_content"):
        if key in twist:
            choice["delta"][key] = twist[key]
    for key in ("usage", "id"):
        if key in twist:
            chunk[key] = twist[key]
    if "second" in twist:
        chunk["choices"].append({"index": 1, "delta": {"content": text}})
    if writing == "key":  # the text as a key too, written before the content
        chunk = {text: 1, **chunk}
    data = (
        json.dumps(chunk, separators=(",", ":"))
        if writing == "ascii"
        else orjson.dumps(chunk).decode()
    )
    parser = ChunkParser()
    events = parser.feed(json_object(data))
    if len(events) != 1 or type(events[0]) is not TextDelta:
        return  # no shape is learnt from such a chunk
    got = openai_wire._text_shape(data, json_object(data), events[0])
    assert got == _shape_by_probe(data, events[0].text), data


def test_feed_data_reads_a_text_chunk_of_a_known_shape_without_parsing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parser = ChunkParser()
    head = '{"id":"c","choices":[{"index":0,"delta":{"content":'
    assert parser.feed_data(head + '"one"},"finish_reason":null}]}') == [TextDelta("one")]
    parsed: list[str] = []
    monkeypatch.setattr(openai_wire, "json_object", lambda d: parsed.append(d) or {})
    assert parser.feed_data(head + '"two"},"finish_reason":null}]}') == [TextDelta("two")]
    assert parsed == []
    parser.feed_data(head + '"t\\u0021"},"finish_reason":null}]}')  # escaped: parsed
    assert len(parsed) == 1
    monkeypatch.undo()
    with pytest.raises(UpstreamError):  # one quote for both ends of the text: not JSON
        parser.feed_data(head + '"},"finish_reason":null}]}')
    with pytest.raises(UpstreamError):  # a control character in a string: not JSON
        parser.feed_data(head + '"a\tb"},"finish_reason":null}]}')
