"""The path of one invocation: route, admit, invoke the backend, filter, hand to a dialect.

``Gateway`` owns the long-lived parts (store, authenticator, backends, meter);
``Gateway.open`` returns a ``Call``: the request's event stream, already
started, so that a request that was never going to work (unknown agent, no
balance, an upstream that fails before answering) becomes an HTTP error
instead of a 200 stream that fails.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import AsyncGeneratorType, TracebackType

from gateway import metrics, price_fields, stream_contract
from gateway.auth import Authenticator
from gateway.breaker import CircuitBreaker
from gateway.config import GatewayConfig
from gateway.errors import (
    ConfigError,
    GatewayError,
    NotFound,
    PermissionDenied,
    Problem,
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
)
from gateway.events import (
    Batch,
    Completed,
    Failed,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
)
from gateway.invocation import AgentInvocation
from gateway.metering import Hold, Meter
from gateway.plugin import Backend, CallContext, Filter, Observer, ObservingFilter
from gateway.route import Route, Target
from gateway.store import ApiKey, Store
from gateway.store.a2a_tasks import TaskStore
from gateway.store.cipher import PLAINTEXT, ContentCipher, KeyProblem, cipher_from_env
from gateway.store.holds import Holds
from gateway.store.policy import StoragePolicy, storage_policy
from gateway.store.response_runs import ResponseRuns
from gateway.store.responses import ResponseStore
from gateway.tasks import BackgroundTasks
from gateway.typed import maker

log = logging.getLogger(__name__)

# ``CallContext(...)`` without the class's call (``maker``): about 4.7k instructions less.
_make_context = maker(CallContext)

# The first event that shows the upstream is answering (or has finished).
_ANSWERING = (TextDelta, ReasoningDelta, ToolCallStarted, ToolCallArgumentsDelta, Completed)


@dataclass(frozen=True, slots=True)
class Generation:
    """One loaded configuration and what was built from it.

    A reload swaps in a new generation at once; a request keeps the one it
    started with. Backends whose settings did not change carry over (with
    their connection pools and circuit breakers).
    """

    config: GatewayConfig
    backends: Mapping[str, Backend]
    breakers: Mapping[str, CircuitBreaker]
    filters: tuple[Filter, ...]
    # The filters as a request's stream meets them (the last listed first): those that
    # only observe (``ObservingFilter``) with nothing that changes the stream between
    # them and metering observe in the contract check's step, without a layer each
    # (``Gateway._start``); the rest wrap the stream.
    observing: tuple[ObservingFilter, ...] = field(init=False)
    wrapping: tuple[Filter, ...] = field(init=False)

    def __post_init__(self) -> None:
        met = tuple(reversed(self.filters))
        observing = 0
        while observing < len(met) and isinstance(met[observing], ObservingFilter):
            observing += 1
        object.__setattr__(self, "observing", met[:observing])
        object.__setattr__(self, "wrapping", met[observing:])

    @classmethod
    def build(cls, config: GatewayConfig, previous: Generation | None = None) -> Generation:
        backends: dict[str, Backend] = {}
        breakers: dict[str, CircuitBreaker] = {}
        for name, spec in config.backends.items():
            if previous is not None and previous.config.backends.get(name) == spec:
                backends[name] = previous.backends[name]
                breakers[name] = previous.breakers[name]
            else:
                backends[name] = spec.plugin.create(name, spec.options)
                breakers[name] = CircuitBreaker(spec.breaker)
        filters = tuple(spec.plugin.create(spec.options) for spec in config.filters)
        return cls(config, backends, breakers, filters)


def _cipher(config: GatewayConfig) -> ContentCipher:
    """The cipher of stored content; a key gone bad since the file was checked is a
    ``ConfigError`` here too, never a fall back to plain text."""
    encryption = config.responses.encryption
    if encryption is None:
        return PLAINTEXT
    try:
        return cipher_from_env(encryption.key_env, encryption.previous_key_envs)
    except KeyProblem as problem:
        raise ConfigError([Problem(problem.setting, problem.message, config.source)]) from None


class Gateway:
    def __init__(self, generation: Generation, store: Store, tasks: BackgroundTasks) -> None:
        config = generation.config
        self.generation = generation
        self.store = store
        self.tasks = tasks
        self.auth = Authenticator(
            store,
            ttl=config.auth.cache_ttl,
            size=config.auth.cache_size,
            stale_for=config.auth.stale_for,
        )
        self.holds = Holds(store.redis, cluster=config.redis.cluster)
        self.meter = Meter(
            self.holds,
            tasks,
            config.metering,
            fail_open=config.redis.admission == "fail_open",
            alerts=config.alerts,
        )
        # Keys are read once: encryption changes at the next restart (gateway.reload).
        self.cipher = _cipher(config)
        self.responses = ResponseStore(store.redis, self.cipher)
        self.response_runs = ResponseRuns(store.redis, config.redis, config.responses, self.cipher)
        # A2A tasks and contexts (the /a2a door), sealed and kept as stored responses are
        # (each write kept its agent's ``storage`` retention).
        self.a2a_tasks = TaskStore(store.redis, self.cipher)
        self.draining = False  # set at SIGTERM: readiness turns false
        self.interrupts = stream_contract.Interrupts()
        self._in_use: dict[int, int] = {}  # id(backend) -> calls using it
        self._retired: dict[int, Backend] = {}  # replaced backends, closed when unused
        self._loop: asyncio.AbstractEventLoop | None = None  # see ``loop``

    @classmethod
    def build(cls, config: GatewayConfig, store: Store, tasks: BackgroundTasks) -> Gateway:
        return cls(Generation.build(config), store, tasks)

    @property
    def config(self) -> GatewayConfig:
        return self.generation.config

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running event loop, kept from one request to the next: on Python 3.11
        each ``asyncio.get_running_loop()`` is a ``getpid`` system call. A gateway
        serves on one loop (its store's connections are that loop's); a loop kept
        that no longer runs (a test's, before the next test's) is replaced."""
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def reload(self, config: GatewayConfig) -> None:
        """Serve ``config`` to new requests; close backends it dropped once they are idle."""
        old = self.generation
        self.generation = Generation.build(config, old)
        self.meter.alerter.configure(config.alerts)  # thresholds and webhook: at once
        kept = {id(b) for b in self.generation.backends.values()}
        for backend in old.backends.values():
            if id(backend) not in kept:
                self._retired[id(backend)] = backend
                self._close_if_idle(backend)

    def _close_if_idle(self, backend: Backend) -> None:
        if id(backend) in self._retired and not self._in_use.get(id(backend)):
            del self._retired[id(backend)]
            self.tasks.spawn(backend.aclose(), name="close a retired backend")

    async def aclose(self) -> None:
        for backend in [*self.generation.backends.values(), *self._retired.values()]:
            await backend.aclose()
        await self.response_runs.aclose()

    def route(self, key: ApiKey, agent: str) -> Route:
        route = self.generation.config.routes.get(agent)
        if route is None:
            raise NotFound(
                f"The model '{agent}' does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        if not key.allows(agent):
            raise PermissionDenied(f"This API key may not call the agent '{agent}'.", param="model")
        return route

    def storage(self, agent: str) -> StoragePolicy:
        """What may be kept of ``agent``'s conversations, by the configuration served now."""
        config = self.generation.config
        return storage_policy(config.responses, config.routes.get(agent), agent)

    def agents(self, key: ApiKey) -> list[str]:
        return [agent for agent in self.config.routes if key.allows(agent)]

    async def open(
        self,
        invocation: AgentInvocation,
        key: ApiKey,
        request_id: str,
        budget: int | None = None,
    ) -> Call:
        """Admit the call, then start it on the route's first backend that answers.

        A backend that fails before its first event (connection failure,
        timeout, 429, 5xx) hands over to the next; nothing has reached the
        client yet. One whose circuit is open is skipped. ``budget`` caps what
        this one request may cost, in credits.
        """
        generation = self.generation  # the request keeps it, whatever a reload does
        route = self.route(key, invocation.agent)
        price_fields.check(invocation, route.allow_price_fields)
        metrics.observation().route = invocation.agent
        hold = await self.meter.admit(invocation, key, route, request_id, budget)
        invocation = hold.invocation
        try:
            return await self._first_answer(generation, invocation, key, route, hold)
        except BaseException:
            self.meter.settle(hold, "")  # nothing ran: releases the hold
            raise

    async def _first_answer(
        self,
        generation: Generation,
        invocation: AgentInvocation,
        key: ApiKey,
        route: Route,
        hold: Hold,
    ) -> Call:
        charge_id = hold.charge_id
        request_id = hold.record.request_id
        failure: GatewayError | None = None
        failed, obs = "", metrics.observation()
        paused = False  # a backend skipped because of this key's own failures
        for attempt, target in enumerate(self._order(route)):
            breaker = generation.breakers[target.backend]
            if not breaker.allow(key.id):
                paused = paused or breaker.refuses_key(key.id)
                continue
            if failed:
                metrics.FALLBACKS.labels(invocation.agent, failed).inc()
            obs.backend = target.backend
            hold.backend = target.backend
            ctx = _make_context(
                request_id=request_id,
                key_id=key.id,
                agent=invocation.agent,
                backend=target.backend,
                model=target.model or route.model or invocation.agent,
                route=route,
                charge_id=charge_id if attempt == 0 else f"{charge_id}-{attempt}",
            )
            call = self._start(generation, invocation, ctx, hold)
            try:
                await call.prefetch()
            except (UpstreamError, RateLimited) as exc:
                await call.discard()
                if isinstance(exc, RateLimited):
                    breaker.release(key.id)  # busy, not broken
                else:
                    breaker.failure(key.id)
                log.warning(
                    "backend %r failed before answering request %s: %s",
                    target.backend,
                    request_id,
                    exc.message,
                )
                failure, failed = exc, target.backend
                continue
            except GatewayError:
                breaker.success(key.id)  # it answered: the request was at fault
                await call.discard()
                raise
            except BaseException:
                breaker.release(key.id)
                await call.discard()
                raise
            breaker.success(key.id)
            obs.first_token = time.perf_counter()
            return call
        if failure is None and paused:
            failure = ServiceUnavailable(
                f"The backends of agent '{invocation.agent}' failed this API key's latest "
                "requests, so its requests to them are paused for a while (other keys are "
                "not); retry later.",
                code="key_circuit_open",
            )
        raise failure or ServiceUnavailable(
            f"No backend for agent '{invocation.agent}' is available now; retry later."
        )

    def _order(self, route: Route) -> list[Target]:
        """The route's targets in the order to try them; the first drawn by weight."""
        targets = list(route.targets)
        if len(targets) > 1 and any(t.weight for t in targets):
            weights = [t.weight or 1 for t in targets]
            first = random.choices(range(len(targets)), weights=weights)[0]
            targets.insert(0, targets.pop(first))
        return targets

    def _start(
        self, generation: Generation, invocation: AgentInvocation, ctx: CallContext, hold: Hold
    ) -> Call:
        backend = generation.backends[ctx.backend]
        self._in_use[id(backend)] = self._in_use.get(id(backend), 0) + 1
        metrics.OPEN_STREAMS.inc()
        upstream = backend.invoke(invocation, ctx)
        timeouts = generation.config.backends[ctx.backend].timeouts
        # Metered, and observed by the filters that only observe and come right after
        # metering, in the contract check's own step (a layer less each for every read).
        count = self.meter.counter(hold)
        observers: tuple[Observer, ...] = ()
        for watcher in generation.observing:
            observers += (watcher.observe(ctx),)
        batches = stream_contract.checked(
            upstream, ctx, timeouts, self.interrupts, count, observers, self.loop()
        )
        layers: list[AsyncIterator[object]] = [batches, upstream]  # outermost first
        for f in generation.wrapping:  # the first listed ends up closest to the client
            batches = f.wrap(batches, ctx)
            layers.insert(0, batches)
        return Call(ctx, batches, tuple(layers), self.meter, hold, lambda: self._done(backend))

    @property
    def active_calls(self) -> int:
        return sum(self._in_use.values())

    def _done(self, backend: Backend) -> None:
        metrics.OPEN_STREAMS.dec()
        self._in_use[id(backend)] -= 1
        if not self._in_use[id(backend)]:
            del self._in_use[id(backend)]
            self._close_if_idle(backend)


async def _ready(batch: Batch) -> Batch:
    return batch


class Call:
    """One request's running event stream, in batches (``gateway.events``); iterate
    it once, then ``aclose`` it."""

    def __init__(
        self,
        ctx: CallContext,
        batches: AsyncIterator[Batch],
        layers: tuple[AsyncIterator[object], ...],
        meter: Meter,
        hold: Hold,
        on_done: Callable[[], None],
    ) -> None:
        self.ctx = ctx
        self.hold = hold
        self._on_done: Callable[[], None] | None = on_done
        self._batches = batches
        self._layers = layers
        self._meter = meter
        self._buffered: deque[Batch] = deque()

    async def prefetch(self) -> None:
        """Read up to the first content or terminal event; raise if the call failed before any."""
        async for batch in self._batches:
            self._buffered.append(batch)
            for event in batch:
                if type(event) is TextDelta:  # most answers' first event: answering
                    return
                if isinstance(event, Failed):
                    raise event.error
                if isinstance(event, _ANSWERING):
                    return

    def __aiter__(self) -> Call:
        return self

    def __anext__(self) -> Awaitable[Batch]:
        # No generator of its own: after the prefetched batches, each step is the
        # outermost layer's own, so the Call costs nothing per batch. A prefetched one
        # is a coroutine that returns it (no future, so no loop to look up).
        if self._buffered:
            return _ready(self._buffered.popleft())
        return anext(self._batches)

    def aclose(self) -> Awaitable[None]:
        """Close the stream and settle it (in the background; once)."""
        return self._close(settle=True)

    def discard(self) -> Awaitable[None]:
        """Close every layer, outermost first, so each one's ``finally`` runs now."""
        return self._close(settle=False)

    async def _close(self, *, settle: bool) -> None:
        # ``aclose`` and ``discard`` in one coroutine (``async with`` the call awaits it
        # directly): a frame per request instead of three.
        try:
            try:
                for layer in self._layers:
                    # (An async generator's exact type first: ``isinstance`` against
                    # the ABC is a Python call each.)
                    if type(layer) is AsyncGeneratorType or isinstance(layer, AsyncGenerator):
                        await layer.aclose()
            finally:
                on_done, self._on_done = self._on_done, None
                if on_done is not None:
                    on_done()
        finally:
            if settle:
                self._meter.settle(self.hold, self.ctx.backend)

    async def __aenter__(self) -> Call:
        return self

    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Awaitable[None]:
        return self._close(settle=True)
