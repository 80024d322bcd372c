"""The backend contract: what every backend must do, as tests any backend can run.

A backend is judged through the plugin API alone (``gateway.plugin``:
``invoke(invocation, ctx)`` returning an async iterator, then ``aclose()``), against
an upstream it is pointed at. What the upstream answers is described here in
neutral terms (``Answer``, ``Fault``); a ``Harness``, one per backend type, scripts
its upstream (a fake speaking that upstream's wire format) to answer so, and says
what the backend's events must then be. ``docs/backend-contract.md`` shows a plugin
author how to run it.

The scenarios (``BackendContract``): text, incremental streaming, tool calls,
reasoning, usage, the ``length`` finish, a JSON answer to a stream request, two
requests at once, closing the stream early (the upstream must see the client go
away), ``aclose`` before any request; and failures: an HTTP error status before
the headers, an upstream error mid-stream and before any output, a cut connection,
a clean end without the terminal frame, a stall and a slow first byte (timeouts), a
frame that is not JSON, a line longer than ``max_line_bytes``, an unreachable
upstream. A harness lists the ``features`` its backend has; a scenario it cannot
produce is skipped.

Every run is checked for the stream's shape (``check_shape``): events or lists of
events (a backend may yield either), exactly one terminal event and last, or none
when the backend raises; usage before the terminal; every tool call started before
its arguments; a failure only ever a ``GatewayError``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import pytest

# Only the plugin API, as a third-party backend's tests would import it.
from gateway.plugin import (
    AgentInvocation,
    Backend,
    CallContext,
    Completed,
    Event,
    Failed,
    FinishReason,
    GatewayError,
    Message,
    ReasoningDelta,
    Route,
    TextDelta,
    TextPart,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    UpstreamError,
    UpstreamTimeout,
    Usage,
)

Feature = Literal["upstream", "tools", "reasoning", "length", "streaming"]
FEATURES: frozenset[Feature] = frozenset(("upstream", "tools", "reasoning", "length", "streaming"))
"""``upstream``: the backend calls one (every ``Fault`` applies); ``tools``: it passes the
upstream's tool calls on; ``reasoning``: its reasoning; ``length``: an answer cut at the
output limit; ``streaming``: it can be made to stream slowly (``Answer.chunk_delay``)."""

FAULT_MESSAGE = "the upstream's own words"
"""The message a harness puts in every error its upstream reports: the backend must pass
it on (in the failure's message), so the client and the log see why."""


@dataclass(frozen=True)
class Call:
    """One tool call of an answer; ``call_id`` empty: any id (the backend makes one up)."""

    name: str
    arguments: tuple[str, ...]  # streamed in these pieces
    call_id: str = ""


@dataclass(frozen=True)
class Answer:
    """What the upstream answers."""

    text: tuple[str, ...] = ("Hello", " from", " upstream")
    reasoning: tuple[str, ...] = ()
    calls: tuple[Call, ...] = ()
    usage: tuple[int, int] = (11, 3)  # input and output tokens, as the upstream reports them
    finish: FinishReason | None = None  # default: tool_calls with calls, else stop
    chunk_delay: float = 0.0  # seconds between the upstream's frames

    @property
    def finish_reason(self) -> FinishReason:
        return self.finish or ("tool_calls" if self.calls else "stop")


FaultKind = Literal[
    "status",  # an HTTP error ``status`` before any header
    "error_mid_stream",  # the upstream reports an error after ``after`` text pieces
    "cut",  # the connection drops after ``after`` text pieces
    "no_terminal",  # the body ends cleanly after ``after`` pieces, without its terminal frame
    "stall",  # silence after ``after`` pieces, connection open (timeout: TIMEOUT)
    "slow_first_byte",  # no header within TIMEOUT
    "garbage",  # a frame that is not JSON after ``after`` pieces
    "huge_line",  # a line longer than the backend's max_line_bytes (HUGE_LINE_LIMIT)
    "unreachable",  # nothing listens where the backend connects
    "json_answer",  # not a fault: one JSON answer to a stream request (LiteLLM may)
]
TIMEOUT = 0.3  # the backend's timeout in the stall and slow_first_byte scenarios
HUGE_LINE_LIMIT = 1024  # the backend's max_line_bytes in the huge_line scenario


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    status: int = 0
    after: int = 2


@dataclass
class Case:
    """One request to run: the backend (closed after the run), what to send, and what the
    events must say (for a backend that cannot be scripted, e.g. ``echo``, the harness
    gives what it will answer)."""

    backend: Backend
    invocation: AgentInvocation
    expected: Answer
    ctx: CallContext | None = None  # default: ``context(invocation)``


class Harness(Protocol):
    """One backend type under the contract, with its upstream."""

    features: frozenset[Feature]

    def case(self, answer: Answer) -> Case:
        """A backend whose upstream will give ``answer``, and the invocation that asks."""
        ...

    def fault(self, fault: Fault, answer: Answer) -> Case:
        """As ``case``, the upstream failing as ``fault`` says (only with ``upstream``); the
        error the upstream reports carries ``FAULT_MESSAGE``."""
        ...

    async def released(self, timeout: float) -> None:  # noqa: ASYNC109
        """Return once the upstream has seen its client go away (fail after ``timeout``)."""
        ...


def invocation(text: str = "hello there", **fields: Any) -> AgentInvocation:
    """A one-message invocation; ``fields`` set the rest (those this gateway has)."""
    return _make(
        AgentInvocation,
        agent="contract",
        input=(Message("user", (TextPart(text),)),),
        stream=True,
        **fields,
    )


def context(inv: AgentInvocation, *, model: str = "contract-model", charge: str = "c1") -> Any:
    """The ``CallContext`` of one request for ``inv``."""
    return _make(
        CallContext,
        request_id=f"req_{charge}",
        key_id="key_contract",
        agent=inv.agent,
        backend="contract",
        model=model,
        route=Route(backend="contract", model=model),
        invocation=inv,
        charge_id=charge,
    )


def _make(cls: Any, **values: Any) -> Any:
    """``cls`` from the ``values`` it has fields for (the model may lose or gain some)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


# Running a case


@dataclass
class Outcome:
    events: list[Event] = field(default_factory=list)
    error: GatewayError | None = None  # raised, or the ``Failed`` event's
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each event

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, TextDelta))

    @property
    def reasoning(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, ReasoningDelta))

    @property
    def calls(self) -> list[tuple[str, str, str]]:
        """``(call_id, name, arguments)`` of each call, in order."""
        names: dict[str, str] = {}
        arguments: dict[str, str] = {}
        for e in self.events:
            if isinstance(e, ToolCallStarted):
                names[e.call_id] = e.name
                arguments[e.call_id] = ""
            elif isinstance(e, ToolCallArgumentsDelta):
                arguments[e.call_id] += e.arguments
        return [(call_id, name, arguments[call_id]) for call_id, name in names.items()]

    @property
    def usage(self) -> Usage | None:
        reports = [e for e in self.events if isinstance(e, Usage)]
        return reports[-1] if reports else None  # a later report replaces an earlier one

    @property
    def finish(self) -> FinishReason | None:
        last = self.events[-1] if self.events else None
        return last.finish_reason if isinstance(last, Completed) else None


def flatten(item: Event | Iterable[Event]) -> list[Event]:
    """One item of a backend's stream as events: an event alone, or a batch of them."""
    return list(item) if isinstance(item, list | tuple) else [item]  # type: ignore[list-item]


async def run(case: Case, *, until: int | None = None) -> Outcome:
    """Run ``case`` to its end (or until ``until`` content events came, then close it)."""
    ctx = case.ctx if case.ctx is not None else context(case.invocation)
    stream = case.backend.invoke(case.invocation, ctx)
    out = Outcome()
    try:
        async for item in stream:
            events = flatten(item)
            out.events += events
            out.arrivals += [time.monotonic()] * len(events)
            if until is not None and _content(out.events) >= until:
                break
    except GatewayError as exc:
        out.error = exc
    finally:
        await aclose_stream(stream)
    if until is None:
        check_shape(out.events, raised=out.error is not None)
    if out.error is None and out.events and isinstance(out.events[-1], Failed):
        out.error = out.events[-1].error
    return out


async def aclose_stream(stream: AsyncIterator[Any]) -> None:
    """Close a backend's stream as the gateway does when the client goes away."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def _content(events: list[Event]) -> int:
    kinds = TextDelta | ReasoningDelta | ToolCallStarted | ToolCallArgumentsDelta
    return sum(isinstance(e, kinds) for e in events)


def check_shape(events: list[Event], *, raised: bool) -> None:
    """The stream's shape the gateway relies on (``gateway.events``)."""
    terminals = [i for i, e in enumerate(events) if isinstance(e, Completed | Failed)]
    if raised:
        assert terminals == [], f"a terminal event, then an exception: {events}"
    else:
        assert terminals == [len(events) - 1], f"not one terminal event, last: {events}"
    started: set[str] = set()
    for e in events:
        assert isinstance(
            e,
            TextDelta
            | ReasoningDelta
            | ToolCallStarted
            | ToolCallArgumentsDelta
            | Usage
            | Completed
            | Failed,
        ), f"not a canonical event: {e!r}"
        if isinstance(e, ToolCallStarted):
            assert e.call_id and e.call_id not in started, f"call id reused or empty: {e}"
            started.add(e.call_id)
        if isinstance(e, ToolCallArgumentsDelta):
            assert e.call_id in started, f"arguments before their call: {e}"
        if isinstance(e, Usage):
            assert e.credits is None, "a backend leaves credits to metering"


def assert_answered(out: Outcome, expected: Answer) -> None:
    """``out`` says what ``expected`` says."""
    assert out.error is None, f"the backend failed: {out.error!r}"
    assert out.text == "".join(expected.text)
    assert out.reasoning == "".join(expected.reasoning)
    assert [(name, args) for _, name, args in out.calls] == [
        (c.name, "".join(c.arguments)) for c in expected.calls
    ]
    assert [c.call_id for c in expected.calls if c.call_id] == [
        call_id for (call_id, _, _), c in zip(out.calls, expected.calls, strict=True) if c.call_id
    ]
    usage = out.usage
    assert usage is not None, "no usage reported"
    assert (usage.input_tokens, usage.output_tokens) == expected.usage
    assert out.finish == expected.finish_reason


def status_of(upstream_status: int) -> int:
    """The status a backend reports for an upstream's HTTP error (``http.upstream_error``):
    the client's mistakes stay theirs, anything else is the gateway's upstream failing
    (never a 401/403 that would look like the client's own key failing)."""
    if upstream_status in (400, 422):
        return 400
    if upstream_status in (413, 429):
        return upstream_status
    return 502


def assert_failed(out: Outcome, status: int, text: str = "") -> None:
    assert out.error is not None, f"no failure: {out.events}"
    assert isinstance(out.error, GatewayError)
    assert out.error.status == status, out.error
    assert out.text == text
    assert out.finish is None and not any(isinstance(e, Completed) for e in out.events)


# The contract


class BackendContract:
    """The contract's tests; a subclass provides a ``harness`` fixture (a ``Harness``)."""

    @staticmethod
    def needs(harness: Harness, *features: Feature) -> None:
        missing = set(features) - harness.features
        if missing:
            pytest.skip(f"the backend lacks {', '.join(sorted(missing))}")

    @staticmethod
    async def outcome(case: Case, *, until: int | None = None) -> Outcome:
        try:
            return await run(case, until=until)
        finally:
            await case.backend.aclose()

    async def fault(self, harness: Harness, fault: Fault, answer: Answer | None = None) -> Outcome:
        self.needs(harness, "upstream")
        return await self.outcome(harness.fault(fault, answer or Answer()))

    # Answers

    async def test_text(self, harness: Harness) -> None:
        case = harness.case(Answer())
        assert_answered(await self.outcome(case), case.expected)

    async def test_streams_as_the_upstream_writes(self, harness: Harness) -> None:
        """The first text reaches the gateway while the upstream is still writing."""
        self.needs(harness, "streaming")
        case = harness.case(Answer(text=("a ", "b ", "c ", "d"), chunk_delay=0.05))
        out = await self.outcome(case)
        assert_answered(out, case.expected)
        times = [t for e, t in zip(out.events, out.arrivals, strict=True) if type(e) is TextDelta]
        assert times[-1] - times[0] >= 0.1, "the text came all at once"

    async def test_tool_calls(self, harness: Harness) -> None:
        self.needs(harness, "tools")
        calls = (
            Call("get_weather", ('{"ci', 'ty": "Pa', 'ris"}'), "call_a"),
            Call("get_time", ("{}",), "call_b"),
        )
        case = harness.case(Answer(text=(), calls=calls, usage=(20, 9)))
        assert_answered(await self.outcome(case), case.expected)

    async def test_reasoning_comes_before_the_text(self, harness: Harness) -> None:
        self.needs(harness, "reasoning")
        case = harness.case(Answer(reasoning=("Let me ", "think."), text=("42",)))
        out = await self.outcome(case)
        assert_answered(out, case.expected)
        kinds = [type(e) for e in out.events if isinstance(e, TextDelta | ReasoningDelta)]
        assert kinds == sorted(kinds, key=lambda kind: kind is TextDelta)

    async def test_usage_is_the_upstreams(self, harness: Harness) -> None:
        case = harness.case(Answer(usage=(1234, 567)))
        out = await self.outcome(case)
        assert_answered(out, case.expected)
        assert out.usage is not None and not out.usage.estimated

    async def test_an_answer_cut_at_the_output_limit(self, harness: Harness) -> None:
        self.needs(harness, "length")
        case = harness.case(Answer(text=("Hi", " there"), finish="length"))
        assert_answered(await self.outcome(case), case.expected)

    async def test_a_json_answer_to_a_stream_request(self, harness: Harness) -> None:
        """The same events as the stream of that answer."""
        self.needs(harness, "upstream")
        answer = Answer(text=("Let me", " check."), usage=(13, 5))
        if "tools" in harness.features:
            answer = dataclasses.replace(answer, calls=(Call("lookup", ('{"q": 1}',), "call_j"),))
        case = harness.fault(Fault("json_answer"), answer)
        assert_answered(await self.outcome(case), case.expected)

    async def test_two_requests_at_once(self, harness: Harness) -> None:
        """One backend serves concurrent requests (its pool is shared)."""
        case = harness.case(Answer())
        try:
            outs = await asyncio.gather(run(case), run(case))
        finally:
            await case.backend.aclose()
        for out in outs:
            assert_answered(out, case.expected)

    async def test_closing_the_stream_releases_the_upstream(self, harness: Harness) -> None:
        """The client went away: the backend lets go of its upstream request at once."""
        self.needs(harness, "streaming")
        case = harness.case(Answer(text=tuple(f"w{i} " for i in range(100)), chunk_delay=0.02))
        started = time.monotonic()
        out = await self.outcome(case, until=1)
        assert out.text == "w0 " and out.error is None
        await harness.released(timeout=2.0)
        assert time.monotonic() - started < 1.5  # not after the 2 s the answer would take

    async def test_aclose_without_a_request(self, harness: Harness) -> None:
        case = harness.case(Answer())
        await case.backend.aclose()

    # Failures

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422, 429, 500, 503, 529])
    async def test_an_error_status(self, harness: Harness, status: int) -> None:
        out = await self.fault(harness, Fault("status", status=status))
        assert_failed(out, status_of(status))
        assert FAULT_MESSAGE in out.error.message  # type: ignore[union-attr]
        assert not out.events or isinstance(out.events[-1], Failed)

    async def test_an_error_mid_stream(self, harness: Harness) -> None:
        out = await self.fault(harness, Fault("error_mid_stream"), Answer(text=("a ", "b ", "c ")))
        assert_failed(out, 502, "a b ")
        assert FAULT_MESSAGE in out.error.message  # type: ignore[union-attr]

    async def test_an_error_before_any_output(self, harness: Harness) -> None:
        out = await self.fault(harness, Fault("error_mid_stream", after=0))
        assert_failed(out, 502)
        assert FAULT_MESSAGE in out.error.message  # type: ignore[union-attr]

    async def test_a_cut_connection(self, harness: Harness) -> None:
        answer = Answer(text=("one ", "two ", "three ", "four "))
        out = await self.fault(harness, Fault("cut"), answer)
        assert_failed(out, 502, "one two ")
        assert isinstance(out.error, UpstreamError)

    async def test_a_clean_end_without_the_terminal_frame(self, harness: Harness) -> None:
        out = await self.fault(harness, Fault("no_terminal"), Answer(text=("one ", "two ", "3")))
        assert_failed(out, 502, "one two ")

    async def test_a_stall_mid_stream_times_out(self, harness: Harness) -> None:
        started = time.monotonic()
        out = await self.fault(harness, Fault("stall"), Answer(text=("a ", "b ", "c ")))
        assert_failed(out, 504, "a b ")
        assert isinstance(out.error, UpstreamTimeout)
        assert time.monotonic() - started < 3.0
        await harness.released(timeout=1.0)

    async def test_a_slow_first_byte_times_out(self, harness: Harness) -> None:
        started = time.monotonic()
        out = await self.fault(harness, Fault("slow_first_byte"))
        assert_failed(out, 504)
        assert time.monotonic() - started < 3.0

    async def test_a_frame_that_is_not_json(self, harness: Harness) -> None:
        out = await self.fault(harness, Fault("garbage"), Answer(text=("a ", "b ", "c ")))
        assert_failed(out, 502, "a b ")

    async def test_a_line_longer_than_max_line_bytes(self, harness: Harness) -> None:
        answer = Answer(text=("a ", "b ", "c "))
        out = await self.fault(harness, Fault("huge_line"), answer)
        assert out.error is not None and out.error.status == 502
        assert "malformed" in out.error.message
        assert "a b ".startswith(out.text)  # what came before the line, at most
        assert not any(isinstance(e, Completed) for e in out.events)

    async def test_an_unreachable_upstream(self, harness: Harness) -> None:
        out = await self.fault(harness, Fault("unreachable"))
        assert_failed(out, 502)
