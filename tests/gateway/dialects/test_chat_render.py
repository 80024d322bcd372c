from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.dialects.chat_render import ChatChunks, completion_object, usage_object
from gateway.dialects.openai_errors import error_body, error_object
from gateway.errors import RateLimited, UpstreamError
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
from gateway.sse import SSEDecoder
from gateway.transcript import Transcript

ID, CREATED, MODEL = "chatcmpl-1", 1_700_000_000, "echo"


def render(events: Sequence[Event], include_usage: bool = False) -> bytes:
    chunks = ChatChunks(ID, CREATED, MODEL, include_usage)
    return chunks.start() + b"".join(chunks.render(e) for e in events)


def frames(raw: bytes) -> list[str]:
    """The ``data`` of every SSE frame; the bytes must be well-formed SSE."""
    assert raw.endswith(b"\n\n")
    decoder = SSEDecoder()
    events = list(decoder.feed(raw))
    assert list(decoder.close()) == []
    assert all(e.event == "message" for e in events)  # Chat Completions has no event: lines
    return [e.data for e in events]


def chunks_of(raw: bytes) -> list[dict[str, Any]]:
    """Every chunk, parsed and checked against the official SDK model; [DONE] last."""
    data = frames(raw)
    assert data[-1] == "[DONE]"
    assert "[DONE]" not in data[:-1]
    parsed = [orjson.loads(d) for d in data[:-1]]
    for chunk in parsed:
        if "error" not in chunk:
            ChatCompletionChunk.model_validate(chunk)
            assert (chunk["id"], chunk["created"], chunk["model"]) == (ID, CREATED, MODEL)
            assert chunk["object"] == "chat.completion.chunk"
    return parsed


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if c.get("choices")]


def test_text() -> None:
    raw = render([TextDelta("Hel"), TextDelta('lo "w"\n'), Usage(3, 2), Completed()])
    chunks = chunks_of(raw)
    assert deltas(chunks) == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
        {"content": 'lo "w"\n'},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "stop"]
    assert all(c["choices"][0]["index"] == 0 for c in chunks)
    assert all(c["choices"][0]["logprobs"] is None for c in chunks)
    assert all("usage" not in c for c in chunks)  # only with include_usage
    text = "".join(
        c.choices[0].delta.content or "" for c in map(ChatCompletionChunk.model_validate, chunks)
    )
    assert text == 'Hello "w"\n'


@pytest.mark.parametrize("reason", ["stop", "length", "tool_calls", "content_filter"])
def test_finish_reason(reason: Any) -> None:
    chunks = chunks_of(render([Completed(reason)]))
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": reason,
    }


def test_tool_calls() -> None:
    events: list[Event] = [
        ToolCallStarted("call_a", "weather"),
        ToolCallArgumentsDelta("call_a", '{"city":'),
        ToolCallArgumentsDelta("call_a", '"Paris"}'),
        ToolCallStarted("call_b", "time"),
        ToolCallArgumentsDelta("call_b", "{}"),
        Completed("tool_calls"),
    ]
    chunks = chunks_of(render(events))
    calls = [d["tool_calls"] for d in deltas(chunks) if "tool_calls" in d]
    assert calls == [
        [
            {
                "index": 0,
                "id": "call_a",
                "type": "function",
                "function": {"name": "weather", "arguments": ""},
            }
        ],
        [{"index": 0, "function": {"arguments": '{"city":'}}],
        [{"index": 0, "function": {"arguments": '"Paris"}'}}],
        [
            {
                "index": 1,
                "id": "call_b",
                "type": "function",
                "function": {"name": "time", "arguments": ""},
            }
        ],
        [{"index": 1, "function": {"arguments": "{}"}}],
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_reasoning() -> None:
    chunks = chunks_of(render([ReasoningDelta("think"), TextDelta("ok"), Completed()]))
    assert deltas(chunks)[1:3] == [{"reasoning_content": "think"}, {"content": "ok"}]


def test_include_usage() -> None:
    usage = Usage(10, 5, cached_input_tokens=4, reasoning_tokens=2)
    chunks = chunks_of(render([TextDelta("a"), usage, Completed()], include_usage=True))
    *body, last = chunks
    assert all("usage" in c and c["usage"] is None for c in body)
    assert len(body) == 3  # start, "a", finish: the Usage event itself renders nothing
    assert last["choices"] == []
    assert last["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }
    sdk = ChatCompletionChunk.model_validate(last)
    assert sdk.usage is not None and sdk.usage.total_tokens == 15


def test_include_usage_without_a_usage_event_reports_zeros() -> None:
    last = chunks_of(render([Completed()], include_usage=True))[-1]
    assert last["choices"] == [] and last["usage"]["total_tokens"] == 0


def test_failure_mid_stream() -> None:
    raw = render([TextDelta("par"), Failed(UpstreamError("boom"))], include_usage=True)
    chunks = chunks_of(raw)
    assert chunks[-1] == {
        "error": {
            "message": "boom",
            "type": "upstream_error",
            "param": None,
            "code": "upstream_error",
        }
    }
    assert deltas(chunks) == [{"role": "assistant", "content": ""}, {"content": "par"}]
    assert frames(raw)[-2:] == [orjson.dumps(chunks[-1]).decode(), "[DONE]"]


def test_usage_event_renders_no_frame() -> None:
    chunks = ChatChunks(ID, CREATED, MODEL, False)
    assert chunks.render(Usage(1, 1)) == b""


def test_model_name_is_json_escaped() -> None:
    chunks = ChatChunks(ID, CREATED, 'we"ird', True)
    parsed = orjson.loads(frames(chunks.start())[0])
    assert parsed["model"] == 'we"ird'


def transcript(events: Sequence[Event]) -> Transcript:
    t = Transcript()
    for event in events:
        t.add(event)
    return t


def test_completion_object_text() -> None:
    t = transcript([TextDelta("Hi "), TextDelta("there"), Usage(3, 2), Completed("length")])
    obj = completion_object(ID, CREATED, MODEL, t)
    sdk = ChatCompletion.model_validate(obj)
    assert obj["object"] == "chat.completion"
    assert sdk.choices[0].message.content == "Hi there"
    assert sdk.choices[0].message.tool_calls is None
    assert sdk.choices[0].finish_reason == "length"
    assert obj["usage"] == usage_object(Usage(3, 2))
    choice = obj["choices"][0]  # type: ignore[index]
    assert choice["message"]["refusal"] is None and choice["logprobs"] is None


def test_completion_object_tool_calls_and_reasoning() -> None:
    t = transcript(
        [
            ReasoningDelta("hmm"),
            ToolCallStarted("call_1", "f"),
            ToolCallArgumentsDelta("call_1", '{"a"'),
            ToolCallArgumentsDelta("call_1", ":1}"),
            ToolCallStarted("call_2", "g"),
            Completed("tool_calls"),
        ]
    )
    obj = completion_object(ID, CREATED, MODEL, t)
    sdk = ChatCompletion.model_validate(obj)
    message = sdk.choices[0].message
    assert message.content is None
    assert message.tool_calls is not None
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == [  # type: ignore[union-attr]
        ("call_1", "f", '{"a":1}'),
        ("call_2", "g", ""),
    ]
    assert obj["choices"][0]["message"]["reasoning_content"] == "hmm"  # type: ignore[index]


LOGPROBS = (TokenLogprob("Hi", -0.5, (72, 105), (TopLogprob("Yo", -2.0, None),)),)


def test_logprobs_on_a_text_chunk() -> None:
    events: list[Event] = [TextDelta("Hi", LOGPROBS), TextDelta("!"), Completed()]
    chunks = chunks_of(render(events, include_usage=True))
    lp = [c["choices"][0]["logprobs"] for c in chunks if c.get("choices")]
    assert lp[0] is None  # the role chunk
    assert lp[1] == {
        "content": [
            {
                "token": "Hi",
                "logprob": -0.5,
                "bytes": [72, 105],
                "top_logprobs": [{"token": "Yo", "logprob": -2.0, "bytes": None}],
            }
        ],
        "refusal": None,
    }
    assert lp[2:] == [None, None]
    assert deltas(chunks)[1] == {"content": "Hi"}
    assert all("usage" in c for c in chunks)


def test_completion_object_logprobs() -> None:
    t = transcript([TextDelta("Hi", LOGPROBS), TextDelta("!", ()), Completed()])
    sdk = ChatCompletion.model_validate(completion_object(ID, CREATED, MODEL, t))
    logprobs = sdk.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert [(t.token, t.bytes) for t in logprobs.content] == [("Hi", [72, 105])]
    assert logprobs.content[0].top_logprobs[0].token == "Yo"


def test_completion_object_defaults_finish_reason() -> None:
    obj = completion_object(ID, CREATED, MODEL, Transcript())
    assert ChatCompletion.model_validate(obj).choices[0].finish_reason == "stop"


def test_error_object_and_body() -> None:
    err = RateLimited("slow down", param="model")
    assert error_object(err) == {
        "message": "slow down",
        "type": "rate_limit_error",
        "param": "model",
        "code": "rate_limit_exceeded",
    }
    assert orjson.loads(error_body(err)) == {"error": error_object(err)}


TEXTS = st.text(max_size=6) | st.sampled_from(["", '"', "\\", "\n", "\u2028", "é", "😀"])
EVENTS = st.one_of(
    st.builds(TextDelta, TEXTS),
    st.builds(TextDelta, TEXTS, st.just((TokenLogprob("a", -0.5),))),
    st.builds(TextDelta, TEXTS, st.just(())),  # empty logprobs: still a logprobs object
    st.builds(ReasoningDelta, TEXTS),
    st.builds(ToolCallStarted, st.sampled_from(["c1", "c2"]), TEXTS),
    st.builds(ToolCallArgumentsDelta, st.sampled_from(["c1", "c2"]), TEXTS),
    st.builds(Usage, st.integers(0, 9), st.integers(0, 9)),
    st.just(Completed()),
    st.just(Failed(UpstreamError("x"))),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(EVENTS, max_size=6).map(tuple), max_size=5), st.booleans())
def test_a_batch_renders_as_its_events_one_by_one(
    batches: list[tuple[Event, ...]], include_usage: bool
) -> None:
    by_batch = ChatChunks(ID, CREATED, MODEL, include_usage)
    by_event = ChatChunks(ID, CREATED, MODEL, include_usage)
    for batch in batches:
        assert by_batch.frames(batch) == b"".join(by_event.render(e) for e in batch), batch


@settings(max_examples=200, deadline=None)
@given(st.lists(st.builds(TextDelta, TEXTS), max_size=8).map(tuple), st.booleans())
def test_a_read_of_text_renders_as_its_deltas_one_by_one(
    batch: tuple[Event, ...], include_usage: bool
) -> None:
    by_batch = ChatChunks(ID, CREATED, MODEL, include_usage)
    by_event = ChatChunks(ID, CREATED, MODEL, include_usage)
    assert by_batch.frames(batch) == b"".join(by_event.render(e) for e in batch)
