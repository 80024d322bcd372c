"""Render canonical events as Chat Completions chunks or one completion object.

``ChatChunks`` is the streamed answer's renderer, ``ChatCompletion`` the whole one's
(``gateway.dialects.dialect``). The only code that knows chunk shapes. A chunk's fixed
parts are encoded once per request; each event costs one small ``orjson.dumps`` of its
delta. A text delta that carries logprobs puts them on its choice, as OpenAI does:
``"logprobs": {"content": [...], "refusal": null}``.
"""

from __future__ import annotations

import orjson

from gateway import sse
from gateway.dialects.openai_errors import error_object
from gateway.events import (
    Batch,
    Completed,
    Event,
    Failed,
    ReasoningDelta,
    TextDelta,
    TokenLogprob,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    Usage,
)
from gateway.transcript import Transcript


def usage_object(usage: Usage) -> dict[str, object]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


_NO_USAGE = Usage()  # frozen: one for every stream's renderer (a Usage made costs ~7k)


REASONING = "reasoning_content"
"""Where reasoning goes (DeepSeek's and vLLM's name). LibreChat's clients read
``reasoning`` instead (its api/server/controllers/agents/openai.js streams
``delta.reasoning`` and answers ``message.reasoning``): the ``/api/agents/v1``
alias passes ``reasoning_key="reasoning"``."""


def logprobs_object(tokens: list[TokenLogprob] | tuple[TokenLogprob, ...]) -> dict[str, object]:
    return {
        "content": [
            {
                "token": t.token,
                "logprob": t.logprob,
                "bytes": list(t.bytes) if t.bytes is not None else None,
                "top_logprobs": [
                    {
                        "token": top.token,
                        "logprob": top.logprob,
                        "bytes": list(top.bytes) if top.bytes is not None else None,
                    }
                    for top in t.top_logprobs
                ],
            }
            for t in tokens
        ],
        "refusal": None,
    }


class ChatChunks:
    """Turns one request's events into SSE frames, in order."""

    def __init__(
        self,
        completion_id: str,
        created: int,
        model: str,
        include_usage: bool,
        reasoning_key: str = REASONING,
    ) -> None:
        head = (
            orjson.dumps(
                {"id": completion_id, "object": "chat.completion.chunk", "created": created}
            )[:-1]
            + b',"model":'
            + orjson.dumps(model)
        )
        self._usage_null = b',"usage":null' if include_usage else b""
        self._prefix = b"data: " + head + b',"choices":[{"index":0,"delta":'
        # A text delta, the most common chunk by far, costs two concatenations.
        self._text = self._prefix + b'{"content":'
        self._text_end = self._end(b"}", b"null")
        self._text_between = self._text_end + self._text
        self._head = head
        self._include_usage = include_usage
        self._tool_index: dict[str, int] = {}
        self._usage = _NO_USAGE  # until the stream's usage comes
        self._reasoning = b'{"' + reasoning_key.encode() + b'":'

    def _chunk(self, delta: bytes, finish_reason: bytes = b"null") -> bytes:
        return self._prefix + self._end(delta, finish_reason)

    def _end(self, delta: bytes, finish_reason: bytes, logprobs: bytes = b"null") -> bytes:
        return (
            delta
            + b',"logprobs":'
            + logprobs
            + b',"finish_reason":'
            + finish_reason
            + b"}]"
            + self._usage_null
            + b"}\n\n"
        )

    def start(self) -> bytes:
        return self._chunk(b'{"role":"assistant","content":""}')

    head = start

    def frames(self, batch: Batch) -> bytes:
        # A read of text deltas without logprobs (most reads): their frames differ only
        # in the text, so they are its JSON strings joined by the end of one frame and
        # the start of the next, in one join.
        dumps = orjson.dumps
        if batch and type(batch[-1]) is TextDelta:  # (not a read that ends the answer)
            texts = [dumps(e.text) for e in batch if type(e) is TextDelta and e.logprobs is None]
            if len(texts) == len(batch):
                return self._text + self._text_between.join(texts) + self._text_end
        # Else, a text delta without logprobs is rendered here, without ``render``'s call.
        text, end, render = self._text, self._text_end, self.render
        frames = [
            text + dumps(event.text) + end
            if type(event) is TextDelta and event.logprobs is None
            else render(event)
            for event in batch
        ]
        return frames[0] if len(frames) == 1 else b"".join(frames)

    def render(self, event: Event) -> bytes:
        if isinstance(event, TextDelta):
            if event.logprobs is not None:
                logprobs = orjson.dumps(logprobs_object(event.logprobs))
                return self._text + orjson.dumps(event.text) + self._end(b"}", b"null", logprobs)
            return self._text + orjson.dumps(event.text) + self._text_end
        if isinstance(event, ReasoningDelta):
            return self._chunk(self._reasoning + orjson.dumps(event.text) + b"}")
        if isinstance(event, ToolCallStarted):
            index = self._tool_index.setdefault(event.call_id, len(self._tool_index))
            call = {
                "index": index,
                "id": event.call_id,
                "type": "function",
                "function": {"name": event.name, "arguments": ""},
            }
            return self._chunk(orjson.dumps({"tool_calls": [call]}))
        if isinstance(event, ToolCallArgumentsDelta):
            index = self._tool_index.get(event.call_id, 0)
            call = {"index": index, "function": {"arguments": event.arguments}}
            return self._chunk(orjson.dumps({"tool_calls": [call]}))
        if isinstance(event, Usage):
            self._usage = event
            return b""
        if isinstance(event, Completed):
            frames = self._chunk(b"{}", orjson.dumps(event.finish_reason))
            if self._include_usage:
                frames += sse.data_frame(
                    self._head
                    + b',"choices":[],"usage":'
                    + orjson.dumps(usage_object(self._usage))
                    + b"}"
                )
            return frames + sse.DONE
        if isinstance(event, Failed):
            return sse.data_frame(orjson.dumps({"error": error_object(event.error)})) + sse.DONE
        return b""


class ChatCompletion(Transcript):
    """The whole answer: the events folded into a transcript, then one completion object."""

    __slots__ = ("_completion_id", "_created", "_model", "_reasoning_key")

    def __init__(
        self, completion_id: str, created: int, model: str, reasoning_key: str = REASONING
    ) -> None:
        super().__init__()
        self._completion_id = completion_id
        self._created = created
        self._model = model
        self._reasoning_key = reasoning_key

    def fold(self, batch: Batch) -> None:
        add = self.add
        for event in batch:
            add(event)

    def body(self) -> dict[str, object]:
        if self.failure is not None:
            raise self.failure.error
        return completion_object(
            self._completion_id, self._created, self._model, self, self._reasoning_key
        )


def completion_object(
    completion_id: str,
    created: int,
    model: str,
    transcript: Transcript,
    reasoning_key: str = REASONING,
) -> dict[str, object]:
    message: dict[str, object] = {
        "role": "assistant",
        "content": "".join(transcript.text) if transcript.text else None,
        "refusal": None,
    }
    if transcript.reasoning:
        message[reasoning_key] = "".join(transcript.reasoning)
    if transcript.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in transcript.tool_calls.values()
        ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": (
                    logprobs_object(transcript.logprobs)
                    if transcript.logprobs is not None
                    else None
                ),
                "finish_reason": transcript.finish_reason or "stop",
            }
        ],
        "usage": usage_object(transcript.usage),
    }
