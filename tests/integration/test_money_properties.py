"""The money rule, as properties: whatever usage an upstream reports, the books stay true.

Hypothesis drives each backend that reports usage (``openai_chat``, ``open_responses``
in both its wire variants, ``anthropic``, ``librechat``) through a fake upstream whose
usage report is anything at all: zero, negative, huge (1e12, 1e17, 2**63, 10**30),
floats, strings, booleans, null, missing, inconsistent (cached above input, reasoning
above output, a total that disagrees), Anthropic's cache fields early and late. Each
example enters through one ingress dialect (Chat Completions, Responses, Messages),
streamed or not, with a fresh key, and then checks the key's books:

1. the ledger sums to the balance (the initial credit included), exactly;
2. every amount, balance, hold and token count Redis holds is written as an integer;
3. an answer that delivered output on a priced route is never free;
4. the balance never goes below 0, and no charge exceeds what its request held;
5. a non-streamed answer's ``x-gateway-cost`` is the ledger's charge;
6. the client gets a well-formed answer (or a 402 it could not afford), never a 500.

One gateway (and one fake) serves every example of a backend: it runs on the test's
event loop, while Hypothesis, which is synchronous, runs in a thread and hands each
example to that loop. Runs are derandomized: repeatable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import openai.types.chat as chat_types
import orjson
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDictProxy
from pydantic import TypeAdapter

from gateway import amounts
from gateway.store import LedgerEntry, schema
from tests.conftest import RunningGateway, StartGateway
from tests.fakes.anthropic_upstream import FakeAnthropicUpstream
from tests.fakes.anthropic_upstream import Script as AnthropicScript
from tests.fakes.anthropic_upstream import text as anthropic_text
from tests.fakes.librechat_upstream import AGENT_ID, LIBRECHAT_KEY, ChatScript, FakeLibreChat
from tests.fakes.open_responses_upstream import FakeResponsesUpstream, ResponsesScript
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.fakes.openai_upstream import Script as OpenAIScript
from tests.integration.conftest import UPSTREAM_SECRET
from tests.integration.responses_support import check_error, check_json, check_sse
from tests.integration.support import backend_config, settled

T = TypeVar("T")
Json = dict[str, Any]

EXAMPLES = 200  # per backend; each is one request and its settlement, some 25 ms
BACKENDS = ("openai_chat", "open_responses", "anthropic", "librechat")
# agent id -> its route: prices with cached and cache-write rates, fractional prices
# (rounded up), output-only prices (input cannot make a delivered answer cost something),
# and a cap that answers longer than it are cut at.
ROUTES = {
    "paid": "pricing: {input: 1, output: 2, cached_input: 0.5, cache_write: 1.25}",
    "cheap": "pricing: {input: 0.15, output: 0.6}",
    "output-only": "pricing: {input: 0, output: 3}",
    "capped": "pricing: {input: 1, output: 2}, max_output_tokens: 3",
    "dear": "pricing: {input: 1, output: 100000}",  # 1e12 tokens cost 1e17 credits
}
# Ledger and store fields that must be written as integers (invariant 2).
WHOLE_FIELDS = (
    "amount",
    "balance",
    "held",
    "unbilled",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
WHOLE = re.compile(r"-?[0-9]+")
STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)


# What an upstream may report

HUGE = (10**12, 10**12 + 1, 10**15, 10**17, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 10**30)
NONSENSE = st.one_of(  # what the backends' wire parsers must read as 0
    st.sampled_from((-1, -(10**17), -(2**63), 1.5, 1e12, 1e17, 1e300, -0.0, "12", "1e17", "")),
    st.integers(max_value=-1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=3),
    st.booleans(),
    st.none(),
    st.just([]),
    st.just({"n": 1}),
)


def evenly(*choices: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One of ``choices``, each as likely: within ``cases`` one_of drew the simplest mostly."""
    return st.sampled_from(choices).flatmap(lambda chosen: chosen)


ABSENT = object()  # a count the upstream leaves out
count = evenly(
    st.integers(1, 5000), st.sampled_from((0, 1, 7, *HUGE)), st.integers(min_value=0), NONSENSE
)
junk = st.one_of(st.none(), st.integers(), st.text(max_size=3), st.just([1, 2]), st.booleans())


def counts(*names: str, **nested: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A usage object with any of these counts (each possibly missing), now and then junk."""
    fields = {name: count for name in names} | nested
    usage = st.fixed_dictionaries(
        {name: evenly(value, value, value, st.just(ABSENT)) for name, value in fields.items()}
    ).map(lambda drawn: {name: value for name, value in drawn.items() if value is not ABSENT})
    return evenly(usage, usage, usage, junk)


def details(name: str) -> st.SearchStrategy[Any]:
    return evenly(counts(name), count)


OPENAI_USAGE = counts(
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    prompt_tokens_details=details("cached_tokens"),
    completion_tokens_details=details("reasoning_tokens"),
)
RESPONSES_USAGE = counts(
    "input_tokens",
    "output_tokens",
    "total_tokens",
    input_tokens_details=details("cached_tokens"),
    output_tokens_details=details("reasoning_tokens"),
)
ANTHROPIC_USAGE = counts(
    "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens"
)
# The fields of each fake's script that carry usage (anything), by backend.
REPORTS: dict[str, st.SearchStrategy[Json]] = {
    "openai_chat": st.fixed_dictionaries({"usage": OPENAI_USAGE}),
    "open_responses": st.fixed_dictionaries({"usage": RESPONSES_USAGE, "librechat": st.booleans()}),
    "anthropic": st.fixed_dictionaries(
        {"usage": ANTHROPIC_USAGE, "output_tokens": count, "delta_usage": ANTHROPIC_USAGE}
    ),
    "librechat": st.fixed_dictionaries({"usage": OPENAI_USAGE}),
}


# One example


@dataclass(frozen=True)
class Case:
    """One request: how it is sent, what the key holds, what the upstream answers."""

    dialect: str  # chat | responses | messages
    stream: bool
    agent: str
    max_tokens: int | None  # what the client asks for
    balance: int  # the fresh key's initial credit
    content: tuple[str, ...]  # the upstream's text, in deltas
    report: Json = field(default_factory=dict)  # the fake's usage fields


@st.composite
def cases(draw: st.DrawFn, backend: str) -> Case:
    dialect = draw(st.sampled_from(("chat", "responses", "messages")))
    if dialect == "responses":  # the Responses API takes 16 at least
        max_tokens = draw(st.one_of(st.none(), st.integers(16, 40)))
    elif dialect == "messages":  # required
        max_tokens = draw(st.one_of(st.integers(1, 8), st.just(1024)))
    else:
        max_tokens = draw(st.one_of(st.none(), st.integers(1, 8)))
    return Case(
        dialect=dialect,
        stream=draw(st.booleans()),
        agent=draw(st.sampled_from(tuple(ROUTES))),
        max_tokens=max_tokens,
        balance=draw(
            st.one_of(st.just(10**7), st.integers(0, 12_000), st.just(amounts.MAX_CREDITS))
        ),
        content=tuple(
            draw(st.lists(st.sampled_from(("Hello", " world", " ünï", " 🙂", "!")), max_size=5))
        ),
        report=draw(REPORTS[backend]),
    )


# The upstreams


@dataclass
class Upstream:
    """A fake upstream of one backend type, and how to script its next answer."""

    kind: str
    fake: Any
    base_url: str
    model: str
    secret: str = UPSTREAM_SECRET

    def play(self, case: Case) -> None:
        content, report = case.content, case.report
        if self.kind == "openai_chat":
            self.fake.script = OpenAIScript(content=content, **report)
        elif self.kind == "open_responses":
            self.fake.script = ResponsesScript(content=content, **report)
        elif self.kind == "anthropic":
            blocks = (anthropic_text(*content),) if content else ()
            self.fake.script = AnthropicScript(blocks=blocks, **report)
        else:
            self.fake.chat = ChatScript(content=content, **report)

    async def close(self) -> None:
        await self.fake.close()


async def start_upstream(kind: str) -> Upstream:
    if kind == "openai_chat":
        openai_fake = await FakeOpenAIUpstream().start()
        return Upstream(kind, openai_fake, openai_fake.base_url, "upstream-model-x")
    if kind == "open_responses":
        responses_fake = await FakeResponsesUpstream().start()
        return Upstream(kind, responses_fake, responses_fake.base_url, "upstream-model-x")
    if kind == "anthropic":
        anthropic_fake = await FakeAnthropicUpstream().start()
        return Upstream(kind, anthropic_fake, anthropic_fake.url, "claude-sonnet-4-5")
    librechat_fake = await FakeLibreChat().start()
    return Upstream(kind, librechat_fake, librechat_fake.base_url, AGENT_ID, LIBRECHAT_KEY)


def config(upstream: Upstream) -> str:
    routes = {agent: f"model: {upstream.model}, {route}" for agent, route in ROUTES.items()}
    # No circuit breaker: an example that broke the backend would fail the next ones too.
    breaker = "{failures: 1000000}"
    return backend_config(upstream.kind, upstream.base_url, routes, circuit_breaker=breaker)


# The request and its answer (invariant 6)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    raw: bytes
    delivered: str = ""  # the output the client received


def request_body(case: Case) -> tuple[str, Json]:
    prompt = "what does this cost?"
    body: Json = {"model": case.agent, "stream": case.stream}
    if case.dialect == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
        if case.stream:
            body["stream_options"] = {"include_usage": True}
        if case.max_tokens is not None:
            body["max_tokens"] = case.max_tokens
        return "/v1/chat/completions", body
    if case.dialect == "responses":
        body["input"] = prompt
        if case.max_tokens is not None:
            body["max_output_tokens"] = case.max_tokens
        return "/v1/responses", body
    body["messages"] = [{"role": "user", "content": prompt}]
    body["max_tokens"] = case.max_tokens
    return "/v1/messages", body


async def send(http: aiohttp.ClientSession, gw: RunningGateway, secret: str, case: Case) -> Answer:
    path, body = request_body(case)
    headers = {"Authorization": f"Bearer {secret}"}
    async with http.post(gw.url + path, json=body, headers=headers) as resp:
        answer = Answer(resp.status, resp.headers, await resp.read())
    where = f"{case.dialect} answered {answer.status}: {answer.raw[:600]!r}"
    if answer.status == 402:  # the key could not afford the request's hold
        check_error_body(case.dialect, orjson.loads(answer.raw), answer.status)
        return answer
    assert answer.status == 200, where
    try:
        delivered = check_answer(case, answer.headers.get("Content-Type", ""), answer.raw)
    except AssertionError as exc:
        raise AssertionError(f"{where}: {exc}") from exc
    return Answer(answer.status, answer.headers, answer.raw, delivered)


def check_error_body(dialect: str, body: Json, status: int) -> None:
    if dialect == "messages":
        assert body["type"] == "error", body
        assert isinstance(body["error"]["type"], str) and body["error"]["message"], body
    else:
        check_error(body, status)


def check_usage(usage: object, *names: str) -> None:
    """Token counts the client sees: whole numbers within the gateway's range."""
    assert isinstance(usage, dict), usage
    for name in names:
        value = usage[name]
        assert isinstance(value, int) and not isinstance(value, bool), (name, usage)
        assert 0 <= value <= 2 * amounts.MAX_TOKENS, (name, usage)


def check_answer(case: Case, content_type: str, raw: bytes) -> str:
    """A complete, well-formed answer in the client's dialect; the text it delivered."""
    if not case.stream:
        assert content_type.startswith("application/json"), content_type
        body = orjson.loads(raw)
        if case.dialect == "chat":
            completion = chat_types.ChatCompletion.model_validate(body)
            check_usage(body["usage"], "prompt_tokens", "completion_tokens", "total_tokens")
            return completion.choices[0].message.content or ""
        if case.dialect == "responses":
            check_json("/v1/responses", "POST", 200, body)
            assert body["status"] in ("completed", "incomplete"), body["status"]
            check_usage(body["usage"], "input_tokens", "output_tokens", "total_tokens")
            return "".join(
                part.get("text", "")
                for item in body["output"]
                if item["type"] == "message"
                for part in item["content"]
            )
        message = Message.model_validate(body)
        check_usage(body["usage"], "input_tokens", "output_tokens")
        return "".join(block.text for block in message.content if block.type == "text")
    assert content_type.startswith("text/event-stream"), content_type
    if case.dialect == "chat":
        return chat_stream_text(raw)
    if case.dialect == "responses":
        stream = check_sse(raw)
        assert stream.types[-1] != "response.failed", stream.events[-2:]
        check_usage(stream.final["usage"], "input_tokens", "output_tokens", "total_tokens")
        return stream.text
    return messages_stream_text(raw)


def chat_stream_text(raw: bytes) -> str:
    frames = [f for f in raw.split(b"\n\n") if f and not f.startswith(b":")]
    assert frames[-1] == b"data: [DONE]", frames[-1:]
    text, usage = [], None
    for frame in frames[:-1]:
        assert frame.startswith(b"data: "), frame
        data = orjson.loads(frame[len(b"data: ") :])
        assert "error" not in data, data
        chunk = chat_types.ChatCompletionChunk.model_validate(data)
        text += [c.delta.content or "" for c in chunk.choices]
        usage = data.get("usage") or usage
    check_usage(usage, "prompt_tokens", "completion_tokens", "total_tokens")
    return "".join(text)


def messages_stream_text(raw: bytes) -> str:
    text, names = [], []
    for frame in (f for f in raw.split(b"\n\n") if f):
        head, data_line = frame.split(b"\n")
        assert head.startswith(b"event: ") and data_line.startswith(b"data: "), frame
        name, data = head[len(b"event: ") :].decode(), orjson.loads(data_line[len(b"data: ") :])
        assert data["type"] == name, frame
        names.append(name)
        assert name != "error", data
        if name == "ping":
            continue
        STREAM_EVENT.validate_python(data)
        if name == "content_block_delta" and data["delta"]["type"] == "text_delta":
            text.append(data["delta"]["text"])
        if name in ("message_start", "message_delta"):
            usage = data["message"]["usage"] if name == "message_start" else data["usage"]
            check_usage(usage, "input_tokens", "output_tokens")
    assert names[0] == "message_start" and names[-1] == "message_stop", names
    return "".join(text)


# The books (invariants 1 to 5)


async def check_books(gw: RunningGateway, key_id: str, case: Case, answer: Answer) -> None:
    await settled(gw, key_id)
    redis = gw.store.redis
    raw_balance = await redis.get(schema.balance(key_id))
    raw_held = await redis.get(schema.held(key_id))
    for value in (raw_balance, raw_held):  # 2: integers, never 1e+17 nor 5.0
        assert value is None or WHOLE.fullmatch(value), value
    for _, fields in await redis.xrange(schema.ledger(key_id)):
        for name in WHOLE_FIELDS:
            if name in fields:
                assert WHOLE.fullmatch(fields[name]), (name, fields)
    assert await redis.hlen(schema.holds(key_id)) == 0, "a hold outlived its settlement"

    entries = await gw.store.ledger(key_id)
    balance = await gw.store.balance(key_id)
    books = f"balance {balance}, ledger {[e.to_json() for e in entries]}"
    assert sum(e.amount for e in entries) == balance, books  # 1
    running = 0
    for entry in entries:
        running += entry.amount
        assert entry.balance == running, books
    assert sum(e.amount for e in entries if e.kind == "credit") == case.balance, books
    assert balance >= 0, books  # 4
    usage = [e for e in entries if e.kind == "usage"]
    assert len(usage) <= 1, books
    for entry in usage:
        check_entry(entry, books)
    charged = -usage[0].amount if usage else 0
    if answer.delivered:  # 3: delivered output on a priced route is never free
        assert charged > 0, f"delivered {answer.delivered!r} for free: {books}"
    if answer.status == 200 and not case.stream:  # 5
        assert int(answer.headers["x-gateway-cost"]) == charged, (dict(answer.headers), books)
        assert int(answer.headers["x-gateway-balance"]) == balance, (dict(answer.headers), books)


def check_entry(entry: LedgerEntry, books: str) -> None:
    assert entry.usage is not None, books
    assert entry.amount <= 0 and -entry.amount <= entry.held, books  # 4: never beyond the hold
    assert entry.unbilled >= 0, books
    if entry.unbilled:
        assert -entry.amount == entry.held, books  # charged the whole hold, the rest unbilled
    u = entry.usage
    for name in WHOLE_FIELDS[4:]:
        assert 0 <= getattr(u, name) <= amounts.MAX_TOKENS, books
    assert u.input_tokens >= u.cached_input_tokens + u.cache_write_tokens, books
    assert u.output_tokens >= u.reasoning_tokens, books


async def exercise(
    gw: RunningGateway, http: aiohttp.ClientSession, upstream: Upstream, case: Case
) -> None:
    key, secret = await gw.new_key_record(balance=case.balance)
    upstream.play(case)
    answer = await send(http, gw, secret, case)
    await check_books(gw, key.id, case, answer)


# The properties


# Usage every backend reports in its own words: 1e17 output tokens, cached above input.
EXTREME: dict[str, Json] = {
    "openai_chat": {
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": 10**17,
            "prompt_tokens_details": {"cached_tokens": 50},
        }
    },
    "open_responses": {
        "usage": {
            "input_tokens": 5,
            "output_tokens": 10**17,
            "input_tokens_details": {"cached_tokens": 50},
        },
        "librechat": False,
    },
    "anthropic": {
        "usage": {"input_tokens": 5, "cache_read_input_tokens": 50, "output_tokens": 1},
        "output_tokens": 10**17,
        "delta_usage": None,
    },
    "librechat": {"usage": {"prompt_tokens": 5, "completion_tokens": 10**17}},
}


def on_loop(loop: asyncio.AbstractEventLoop) -> Callable[[Coroutine[Any, Any, T]], T]:
    """Run a coroutine on ``loop`` (the gateway's) from Hypothesis's thread; its result."""

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    return run


PROPERTY = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_books_hold_whatever_usage_the_upstream_reports(
    backend: str,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream = await start_upstream(backend)
    try:
        monkeypatch.setenv("FAKE_UPSTREAM_KEY", upstream.secret)
        gw = await start_gateway(config(upstream))
        run = on_loop(asyncio.get_running_loop())

        @PROPERTY
        @given(case=cases(backend))
        @example(case=Case("chat", False, "paid", None, 10**7, ("Hi",), EXTREME[backend]))
        @example(case=Case("messages", True, "capped", 1024, 10**7, ("a",) * 5, EXTREME[backend]))
        def prop(case: Case) -> None:
            run(exercise(gw, http, upstream, case))
            seen.append(case)

        seen: list[Case] = []
        await asyncio.to_thread(prop)
        assert len(seen) >= EXAMPLES  # Hypothesis ran them all (and the explicit ones)
        assert {c.dialect for c in seen} == {"chat", "responses", "messages"}
    finally:
        await upstream.close()


# The two bugs these properties were written for


async def test_usage_costing_1e17_is_charged_the_hold_not_nothing(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    upstream_env: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream = await start_upstream("openai_chat")
    try:
        gw = await start_gateway(config(upstream))
        key, secret = await gw.new_key_record(balance=10**12)
        # 10**17 output tokens, clamped to MAX_TOKENS (1e12): 1e17 credits on route ``dear``.
        upstream.fake.script = OpenAIScript(
            content=("Hi",), usage={"prompt_tokens": 10, "completion_tokens": 10**17}
        )
        case = Case("chat", False, "dear", None, 10**12, ("Hi",))
        before = unbilled_metric(await metrics_text(http, gw))
        answer = await send(http, gw, secret, case)
        await check_books(gw, key.id, case, answer)
        (entry,) = [e for e in await gw.store.ledger(key.id) if e.kind == "usage"]
        assert entry.held > 0 and entry.amount == -entry.held  # the hold, not 0
        assert entry.usage is not None and entry.usage.output_tokens == amounts.MAX_TOKENS
        assert entry.unbilled == 10 + 100_000 * amounts.MAX_TOKENS - entry.held
        assert answer.headers["x-gateway-cost"] == str(entry.held)
        counted = unbilled_metric(await metrics_text(http, gw)) - before
        assert counted == pytest.approx(entry.unbilled, rel=1e-9)
        assert any("beyond its hold" in r.getMessage() for r in caplog.records)
    finally:
        await upstream.close()


async def metrics_text(http: aiohttp.ClientSession, gw: RunningGateway) -> str:
    async with http.get(gw.url + "/metrics") as resp:
        return await resp.text()


def unbilled_metric(text: str, route: str = "dear") -> float:
    for line in text.splitlines():
        if line.startswith("gateway_unbilled_credits_total{") and f'route="{route}"' in line:
            return float(line.split()[-1])
    return 0.0


async def test_a_stream_claiming_1e12_output_tokens_past_its_cap_leaves_the_balance_whole(
    start_gateway: StartGateway, http: aiohttp.ClientSession, upstream_env: str
) -> None:
    upstream = await start_upstream("openai_chat")
    try:
        gw = await start_gateway(config(upstream))
        case = Case("chat", True, "paid", 100, 0, ("tok",) * 5)
        # A key that affords exactly the hold of 100 output tokens and nothing more.
        probe, probe_secret = await gw.new_key_record(balance=10**7)
        upstream.play(case)
        await send(http, gw, probe_secret, case)
        await settled(gw, probe.id)
        case = dataclasses.replace(case, balance=hold_of(await gw.store.ledger(probe.id)))
        key, secret = await gw.new_key_record(balance=case.balance)
        upstream.fake.script = OpenAIScript(
            content=case.content,
            usage={"prompt_tokens": 10, "completion_tokens": 10**12, "total_tokens": 10**12 + 10},
        )
        answer = await send(http, gw, secret, case)
        await check_books(gw, key.id, case, answer)
        assert await gw.store.balance(key.id) == 0  # charged the whole hold, not below
        (entry,) = [e for e in await gw.store.ledger(key.id) if e.kind == "usage"]
        assert entry.unbilled > 0
    finally:
        await upstream.close()


def hold_of(entries: list[LedgerEntry]) -> int:
    (entry,) = [e for e in entries if e.kind == "usage"]
    return entry.held
