"""The built-in backends under the contract (``backend_contract``): a harness each,
scripting the fake upstream of its wire format (``tests/fakes``)."""

from __future__ import annotations

import re
import socket
from dataclasses import replace
from typing import Any

import orjson
from gateway_plugins.backends.a2a import A2ABackend, A2AOptions
from gateway_plugins.backends.anthropic import AnthropicBackend, AnthropicOptions
from gateway_plugins.backends.echo import EchoBackend, EchoOptions
from gateway_plugins.backends.librechat import LibreChatBackend, LibreChatOptions
from gateway_plugins.backends.open_responses import OpenResponsesBackend, OpenResponsesOptions
from gateway_plugins.backends.openai_chat import OpenAIChatBackend, OpenAIChatOptions

from gateway import tokens
from gateway.invocation import FunctionTool
from gateway.plugin import Backend
from tests.contract.backend_contract import (
    FAULT_MESSAGE,
    HUGE_LINE_LIMIT,
    TIMEOUT,
    Answer,
    Call,
    Case,
    Fault,
    Feature,
    context,
    invocation,
)
from tests.fakes import anthropic_upstream as anthropic
from tests.fakes.a2a_upstream import A2AScript, FakeA2AAgent, rpc_error
from tests.fakes.base import FakeUpstream, Faults, openai_error
from tests.fakes.librechat_upstream import AGENT_ID, ChatScript, FakeLibreChat
from tests.fakes.open_responses_upstream import (
    FakeResponsesUpstream,
    FunctionCallScript,
    ResponsesScript,
)
from tests.fakes.openai_upstream import FakeOpenAIUpstream, Script, ToolCallScript

KEY_ENV = "CONTRACT_UPSTREAM_KEY"  # the fixture sets it (LibreChat's fake checks it)
EVERYTHING: frozenset[Feature] = frozenset(
    ("upstream", "tools", "reasoning", "length", "streaming")
)


class UpstreamHarness:
    """A backend pointed at a fake upstream: ``script`` turns an ``Answer`` into the
    fake's script, ``backend`` makes the backend with some options."""

    features = EVERYTHING
    fake: FakeUpstream[Any]
    model = "contract-model"  # the upstream model (ctx.model)

    async def start(self) -> None:
        await self.fake.start()

    async def aclose(self) -> None:
        await self.fake.close()

    def script(self, answer: Answer, **faults: Any) -> Faults:
        raise NotImplementedError

    def backend(self, base_url: str, **options: Any) -> Backend:
        raise NotImplementedError

    def base_url(self) -> str:
        return self.fake.base_url

    def expect(self, answer: Answer, fault: Fault) -> Answer:
        """What the events say of ``answer`` (as it is, but for ``whole``)."""
        return answer

    def mid_stream(self, answer: Answer, after: int) -> dict[str, Any]:
        """The script fields of an upstream error after ``after`` text pieces."""
        return {"error_after": after, "error_message": FAULT_MESSAGE}

    def error_body(self, status: int) -> bytes:
        return openai_error(status, FAULT_MESSAGE)

    def set_script(self, script: Faults) -> None:
        self.fake.script = script

    def case(self, answer: Answer) -> Case:
        self.set_script(self.script(answer))
        inv = invocation()
        return Case(self.backend(self.base_url()), inv, answer, context(inv, model=self.model))

    def fault(self, fault: Fault, answer: Answer) -> Case:
        options: dict[str, Any] = {}
        faults: dict[str, Any] = {}
        base_url = self.base_url()
        match fault.kind:
            case "status":
                faults = {"status": fault.status, "error_body": self.error_body(fault.status)}
            case "error_mid_stream":
                faults = self.mid_stream(answer, fault.after)
            case "cut":
                faults = {"cut_after": fault.after}
            case "no_terminal":
                faults = {"end_after": fault.after}
            case "stall":
                faults, options = {"stall_after": fault.after}, {"timeout": TIMEOUT}
            case "slow_first_byte":
                faults, options = {"first_byte_delay": 5.0}, {"timeout": TIMEOUT}
            case "garbage":
                faults = {"garbage_after": fault.after}
            case "huge_line":
                line = b"data: " + b"x" * (4 * HUGE_LINE_LIMIT)  # and no end, ever
                faults = {"garbage_after": fault.after, "garbage": line, "stall_after": fault.after}
                options = {"max_line_bytes": HUGE_LINE_LIMIT}
            case "unreachable":
                base_url = base_url.replace(self.fake.url, f"http://127.0.0.1:{_closed_port()}")
            case "json_answer":
                faults = {"json_answer": True}
        self.set_script(self.script(answer, **faults))
        inv = invocation()
        expected = self.expect(answer, fault)
        return Case(
            self.backend(base_url, **options), inv, expected, context(inv, model=self.model)
        )

    async def released(self, timeout: float) -> None:  # noqa: ASYNC109
        await self.fake.wait_disconnect(timeout)


class OpenAIChatHarness(UpstreamHarness):
    def __init__(self) -> None:
        self.fake = FakeOpenAIUpstream()

    def script(self, answer: Answer, **faults: Any) -> Script:
        input_tokens, output_tokens = answer.usage
        return Script(
            reasoning=answer.reasoning,
            content=answer.text,
            tool_calls=tuple(ToolCallScript(c.name, c.arguments, c.call_id) for c in answer.calls),
            finish_reason=answer.finish,
            usage={
                "prompt_tokens": input_tokens,
                "completion_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            },
            chunk_delay=answer.chunk_delay,
            **faults,
        )

    def backend(self, base_url: str, **options: Any) -> Backend:
        return OpenAIChatBackend(
            "contract", OpenAIChatOptions(base_url=base_url, api_key_env=KEY_ENV, **options)
        )


class A2AHarness(UpstreamHarness):
    """A remote A2A agent: text and usage (in its metadata), no tool calls or reasoning
    (an agent runs its own tools), no output limit to hit."""

    features: frozenset[Feature] = frozenset(("upstream", "streaming"))

    def __init__(self) -> None:
        self.fake = FakeA2AAgent()

    def script(self, answer: Answer, **faults: Any) -> A2AScript:
        return A2AScript(
            text=answer.text, usage=answer.usage, chunk_delay=answer.chunk_delay, **faults
        )

    def error_body(self, status: int) -> bytes:
        return rpc_error(FAULT_MESSAGE)

    def backend(self, base_url: str, **options: Any) -> Backend:
        return A2ABackend("contract", A2AOptions(base_url=base_url, api_key_env=KEY_ENV, **options))


class OpenResponsesHarness(UpstreamHarness):
    def __init__(self) -> None:
        self.fake = FakeResponsesUpstream()

    def script(self, answer: Answer, **faults: Any) -> ResponsesScript:
        input_tokens, output_tokens = answer.usage
        calls = tuple(FunctionCallScript(c.name, c.arguments, c.call_id) for c in answer.calls)
        return ResponsesScript(
            reasoning=answer.reasoning,
            content=answer.text,
            function_calls=calls,
            usage={
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
            incomplete="max_output_tokens" if answer.finish == "length" else None,
            chunk_delay=answer.chunk_delay,
            **faults,
        )

    def backend(self, base_url: str, **options: Any) -> Backend:
        return OpenResponsesBackend(
            "contract", OpenResponsesOptions(base_url=base_url, api_key_env=KEY_ENV, **options)
        )


class AnthropicHarness(UpstreamHarness):
    def __init__(self) -> None:
        self.fake = anthropic.FakeAnthropicUpstream()

    def base_url(self) -> str:
        return self.fake.url  # the backend adds /v1/messages

    def script(self, answer: Answer, **faults: Any) -> anthropic.Script:
        blocks = []
        if answer.reasoning:
            blocks.append(anthropic.thinking(*answer.reasoning))
        if answer.text:
            blocks.append(anthropic.text(*answer.text))
        for c in answer.calls:
            blocks.append(anthropic.tool_use(c.name, *c.arguments, call_id=c.call_id))
        input_tokens, output_tokens = answer.usage
        return anthropic.Script(
            blocks=tuple(blocks),
            stop_reason="max_tokens" if answer.finish == "length" else None,
            usage={
                "input_tokens": input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
            },
            output_tokens=output_tokens,
            chunk_delay=answer.chunk_delay,
            **faults,
        )

    def expect(self, answer: Answer, fault: Fault) -> Answer:
        if fault.kind != "json_answer":
            return answer
        # A whole message carries a tool's input as an object: sent on re-serialised.
        calls = tuple(
            replace(c, arguments=(orjson.dumps(orjson.loads("".join(c.arguments))).decode(),))
            for c in answer.calls
        )
        return replace(answer, calls=calls)

    def error_body(self, status: int) -> bytes:
        return anthropic.error_body(status, FAULT_MESSAGE)

    def backend(self, base_url: str, **options: Any) -> Backend:
        return AnthropicBackend(
            "contract", AnthropicOptions(base_url=base_url, api_key_env=KEY_ENV, **options)
        )


class LibreChatHarness(UpstreamHarness):
    """Its chat endpoint: tool calls are LibreChat's own (never passed on), and its final
    chunk always finishes ``stop``."""

    features = EVERYTHING - {"tools", "length"}
    model = AGENT_ID

    def __init__(self) -> None:
        self.fake = FakeLibreChat()

    def script(self, answer: Answer, **faults: Any) -> ChatScript:
        input_tokens, output_tokens = answer.usage
        usage = {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        }
        fields = {"reasoning": answer.reasoning, "content": answer.text, "usage": usage}
        return ChatScript(**(fields | {"chunk_delay": answer.chunk_delay} | faults))

    def mid_stream(self, answer: Answer, after: int) -> dict[str, Any]:
        # openai.js: the pieces so far, then the error text as content, finish stop, [DONE]
        return {"content": answer.text[:after], "error": FAULT_MESSAGE}

    def set_script(self, script: Faults) -> None:
        assert isinstance(self.fake, FakeLibreChat) and isinstance(script, ChatScript)
        self.fake.chat = script

    def backend(self, base_url: str, **options: Any) -> Backend:
        return LibreChatBackend(
            "contract", LibreChatOptions(base_url=base_url, api_key_env=KEY_ENV, **options)
        )


class EchoHarness:
    """No upstream: it answers what it is asked, so each case asks for the answer (its
    usage is its own count: input by the gateway's estimator, a token per delta)."""

    features: frozenset[Feature] = frozenset(("tools", "reasoning", "length", "streaming"))

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def case(self, answer: Answer) -> Case:
        text = "".join(answer.text)
        fields: dict[str, Any] = {}
        expected = replace(answer, calls=(), reasoning=())
        output = len(_words(text))
        if answer.calls:  # it calls the first declared tool, with arguments of its schema
            fields["tools"] = tuple(FunctionTool(c.name) for c in answer.calls)
            expected = replace(expected, calls=(Call(answer.calls[0].name, ("{}",)),))
            output = 2  # "{}" streamed in (up to) three pieces: two
        if answer.finish == "length":  # more words than the limit
            output = len(_words(text))
            fields["max_output_tokens"] = output
            expected = replace(expected, text=("".join(_words(f"{text} more words")[:output]),))
            text = f"{text} more words"
        options = EchoOptions(chunk_delay=answer.chunk_delay, reasoning=bool(answer.reasoning))
        if answer.reasoning:
            reasoning = "The user wants 1 items echoed."
            expected = replace(expected, reasoning=(reasoning,))
            output += len(_words(reasoning))
        inv = invocation(text, **fields)
        expected = replace(expected, usage=(tokens.estimate_input(inv), output))
        return Case(EchoBackend("contract", options), inv, expected)

    def fault(self, fault: Fault, answer: Answer) -> Case:
        raise NotImplementedError("echo has no upstream")

    async def released(self, timeout: float) -> None:  # noqa: ASYNC109
        pass  # nothing to release


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


HARNESSES = {
    "a2a": A2AHarness,
    "echo": EchoHarness,
    "openai_chat": OpenAIChatHarness,
    "open_responses": OpenResponsesHarness,
    "anthropic": AnthropicHarness,
    "librechat": LibreChatHarness,
}
