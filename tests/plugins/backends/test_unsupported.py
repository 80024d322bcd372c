"""Backends that cannot return logprobs refuse a request for them, naming the field."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from gateway_plugins.backends.anthropic import AnthropicBackend, AnthropicOptions
from gateway_plugins.backends.echo import EchoBackend, EchoOptions
from gateway_plugins.backends.librechat import LibreChatBackend, LibreChatOptions
from gateway_plugins.backends.open_responses import OpenResponsesBackend, OpenResponsesOptions
from gateway_plugins.backends.openai_chat import OpenAIChatBackend, OpenAIChatOptions
from gateway_plugins.backends.unsupported import refuse_logprobs

from gateway.errors import InvalidRequest
from gateway.invocation import AgentInvocation
from gateway.plugin import CallContext
from gateway.route import Route
from tests.conftest import invocation

URL = "http://127.0.0.1:9"


def ctx(inv: AgentInvocation) -> CallContext:
    return CallContext("req_1", "key_1", inv.agent, "b", "m", Route(backend="b"), inv)


def test_refuse_logprobs() -> None:
    refuse_logprobs(invocation(), "x")  # not asked: nothing to refuse
    with pytest.raises(InvalidRequest) as caught:
        refuse_logprobs(invocation(logprobs=True, top_logprobs=2), "x")
    assert caught.value.status == 400 and caught.value.param == "logprobs"
    assert "(x)" in caught.value.message


@pytest.mark.parametrize(
    "body",
    [
        lambda: AnthropicBackend("a", AnthropicOptions()).body,
        lambda: OpenResponsesBackend("o", OpenResponsesOptions(URL)).body,
        lambda: LibreChatBackend("l", LibreChatOptions(URL, api_key_env="PATH")).body,
    ],
)
def test_http_backends_without_logprobs_refuse_before_sending(
    body: Callable[[], Callable[[AgentInvocation, CallContext], object]],
) -> None:
    build = body()
    build(invocation(), ctx(invocation()))
    inv = invocation(logprobs=True)
    with pytest.raises(InvalidRequest):
        build(inv, ctx(inv))


async def test_echo_refuses_logprobs() -> None:
    inv = invocation(logprobs=True)
    with pytest.raises(InvalidRequest):
        await anext(aiter(EchoBackend("e", EchoOptions()).invoke(inv, ctx(inv))))


def test_openai_chat_sends_them() -> None:
    inv = invocation(logprobs=True)
    assert OpenAIChatBackend("c", OpenAIChatOptions(URL)).body(inv, ctx(inv))["logprobs"] is True
