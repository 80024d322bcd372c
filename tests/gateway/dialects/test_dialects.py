"""The three dialects through their one protocol (``gateway.dialects.dialect``): the same
events, streamed as frames or folded into one body; errors in each one's shape."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.config import parse_config
from gateway.dialects.chat import CHAT
from gateway.dialects.dialect import Dialect
from gateway.dialects.messages import MESSAGES
from gateway.dialects.request_limits import DEFAULTS
from gateway.dialects.responses import RESPONSES
from gateway.errors import GatewayError, InvalidRequest, RateLimited, UpstreamError
from gateway.events import Completed, Failed, ReasoningDelta, TextDelta, Usage
from gateway.sse import SSEDecoder
from tests.gateway.factories import context

CONFIG = parse_config("backends: {echo: {type: echo}}\nroutes: {echo: {backend: echo}}")
BODIES: dict[str, dict[str, Any]] = {
    "chat_completions": {"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
    "messages": {
        "model": "echo",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
    },
    "responses": {"model": "echo", "input": "hi"},
}
DIALECTS: list[Dialect[Any]] = [CHAT, MESSAGES, RESPONSES]
BATCHES = [[TextDelta("Hel")], [TextDelta("lo"), Usage(3, 2)], [Completed("stop")]]


def parsed(dialect: Dialect[Any], **fields: object) -> Any:
    return dialect.parse({**BODIES[dialect.name], **fields}, DEFAULTS)


def text_of(body: Any) -> str:
    if "choices" in body:
        return str(body["choices"][0]["message"]["content"])
    if "content" in body:
        return "".join(block["text"] for block in body["content"])
    return "".join(part["text"] for item in body["output"] for part in item["content"])


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_the_same_events_stream_and_fold(dialect: Dialect[Any]) -> None:
    req = parsed(dialect, stream=True)
    assert dialect.invocation(req).agent == "echo" and dialect.invocation(req).stream
    streamer = dialect.streamer(req, context(charge_id="c1"), CONFIG, "/v1/x")
    raw = streamer.head() + b"".join(streamer.frames(batch) for batch in BATCHES)
    decoder = SSEDecoder()
    events = list(decoder.feed(raw))
    texts = "".join(e.data for e in events)
    assert "Hel" in texts and "lo" in texts
    if dialect is not MESSAGES:
        assert events[-1].data == "[DONE]"

    folder = dialect.folder(parsed(dialect), context(charge_id="c1"), CONFIG, "/v1/x")
    for batch in BATCHES:
        folder.fold(batch)
    body = folder.body()
    assert text_of(body) == "Hello"
    assert "c1" in orjson.dumps(body).decode()  # the call's charge id makes the answer's id


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_a_failed_call_folds_into_its_error(dialect: Dialect[Any]) -> None:
    folder = dialect.folder(parsed(dialect), context(), CONFIG, "/v1/x")
    folder.fold([TextDelta("x"), Failed(UpstreamError("boom"))])
    with pytest.raises(UpstreamError):
        folder.body()


def test_each_dialect_renders_errors_in_its_shape() -> None:
    error = RateLimited("slow down")
    status, body = CHAT.error(error, "req_1")
    assert (status, orjson.loads(body)["error"]["message"]) == (429, "slow down")
    assert RESPONSES.error(error, "req_1") == CHAT.error(error, "req_1")
    status, body = MESSAGES.error(error, "req_1")
    assert orjson.loads(body)["type"] == "error" and orjson.loads(body)["request_id"] == "req_1"


def test_chat_reasoning_key_follows_the_prefix() -> None:
    req = parsed(CHAT)
    for path, key in (
        ("/v1/chat/completions", "reasoning_content"),
        ("/api/agents/v1/x", "reasoning"),
    ):
        folder = CHAT.folder(req, context(), CONFIG, path)
        folder.fold([ReasoningDelta("hmm"), Completed("stop")])
        assert folder.body()["choices"][0]["message"][key] == "hmm"  # type: ignore[index]


def test_a_background_response_must_be_stored() -> None:
    with pytest.raises(InvalidRequest) as info:
        parsed(RESPONSES, background=True, store=False)
    assert isinstance(info.value, GatewayError) and info.value.param == "store"
