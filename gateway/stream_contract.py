"""The stream contract a backend is held to: one terminal event, last; batches only;
its time limits; and a shutdown that ends it cleanly (``checked``)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Protocol

from gateway import metrics
from gateway.errors import GatewayError, ServiceUnavailable, UpstreamError, UpstreamTimeout
from gateway.events import Batch, Completed, Failed, TextDelta
from gateway.plugin import CallContext, Observer
from gateway.settings import Timeouts
from gateway.watchdog import Watchdog

log = logging.getLogger("gateway.pipeline")  # where operators have always found these lines

_TERMINAL = (Completed, Failed)
_DEFAULT_TIMEOUTS = Timeouts()


class Interrupts:
    """Lets shutdown end every stream in flight cleanly, with a terminal event.

    Each stream registers its ``Watchdog``; ``interrupt_all`` makes every one of
    them expire now (a stream busy elsewhere expires at its next wait).
    """

    def __init__(self) -> None:
        self.stopping = False
        self.waits: set[Watchdog] = set()

    def interrupt_all(self) -> None:
        self.stopping = True
        for wait in list(self.waits):
            wait.expire()


class Count(Protocol):
    """Work on each batch that passes the check, in its step (``metering.stream.Counter``):
    ``count(batch)`` is the batch to pass on; ``ended`` then says whether the stream
    ends with it."""

    ended: bool

    def __call__(self, batch: Batch, /) -> Batch: ...


def _seen(observers: tuple[Observer, ...], batch: Batch) -> Batch:
    """``batch``, shown to the ``observers`` first (``checked``'s rarer ways out)."""
    for observer in observers:
        observer.seen(batch)
    return batch


def _failed(ctx: CallContext, observers: tuple[Observer, ...], error: GatewayError) -> Batch:
    """The terminal event of a failed upstream, counted (``gateway.metrics``) and shown
    to the ``observers``."""
    metrics.upstream_error(ctx.backend, error)
    return _seen(observers, (Failed(error),))


def shutting_down() -> ServiceUnavailable:
    return ServiceUnavailable("The gateway is shutting down; the answer was cut short.")


async def checked(
    events: AsyncIterator[Batch],
    ctx: CallContext,
    timeouts: Timeouts = _DEFAULT_TIMEOUTS,
    interrupts: Interrupts | None = None,
    count: Count | None = None,
    observers: tuple[Observer, ...] = (),
    loop: asyncio.AbstractEventLoop | None = None,
) -> AsyncIterator[Batch]:
    """Hold a backend to the stream contract and its time limits, in batches.

    One terminal event, last; an escaping error becomes ``Failed``; the first
    event must come within ``first_byte`` seconds, each next one within
    ``idle``, and the last within ``total``; a shutdown that cannot wait any
    longer (``interrupts``) ends the stream with ``Failed`` too. Anything but a
    batch (a tuple) is a broken backend, a logged 502; an empty batch is dropped.
    ``count``, if given, passes on each batch of events the backend made (metering, in
    this step rather than in a layer of its own). ``observers`` (of the filters that
    only observe, ``ObservingFilter``) see every batch this yields, the first in the
    tuple first, and end when this does, the last first. ``loop``: the running loop,
    if the caller holds it (``Gateway.loop``).
    """
    interrupts = interrupts or Interrupts()
    if loop is None:
        loop = asyncio.get_running_loop()
    end = math.inf if timeouts.total is None else loop.time() + timeouts.total
    wait, phase = timeouts.first_byte, "answer"
    iterator = aiter(events)
    obs = metrics.observation()
    dog = Watchdog(loop)
    interrupts.waits.add(dog)
    try:
        while True:
            if interrupts.stopping:
                yield _seen(observers, (Failed(shutting_down()),))
                return
            waiting = time.perf_counter()
            deadline = loop.time() + wait
            dog.wait(deadline if deadline < end else end)  # (``min``'s call, spared)
            try:
                batch = await anext(iterator)
            except StopAsyncIteration:
                break
            except asyncio.CancelledError:
                if not dog.timed_out():
                    raise
                if interrupts.stopping:
                    yield _seen(observers, (Failed(shutting_down()),))
                    return
                yield _failed(
                    ctx,
                    observers,
                    UpstreamTimeout(f"Backend '{ctx.backend}' timed out waiting for the {phase}."),
                )
                return
            finally:
                dog.deadline = None
                obs.waited += time.perf_counter() - waiting
            if type(batch) is not tuple:  # the one check a batch costs, as cheap as it gets
                raise TypeError(f"yielded {type(batch).__name__}, not a batch (a tuple of events)")
            for index, event in enumerate(batch):
                if type(event) is not TextDelta and isinstance(event, _TERMINAL):
                    if isinstance(
                        event, Failed
                    ):  # counted first: the consumer may stop at the yield
                        metrics.upstream_error(ctx.backend, event.error)
                    batch = batch[: index + 1]
                    yield _seen(observers, batch if count is None else count(batch))
                    return
            if batch:
                if count is not None:
                    batch = count(batch)
                for observer in observers:
                    observer.seen(batch)
                yield batch
                if count is not None and count.ended:
                    return
            wait, phase = timeouts.idle, "next chunk"
        # (Here, as at every yield, the observers have not ended yet.)
        yield _failed(
            ctx,
            observers,
            UpstreamError("The upstream stream ended before the answer was complete."),
        )
    except GatewayError as exc:
        yield _failed(ctx, observers, exc)
        return
    except Exception:
        log.exception("backend %r failed on request %s", ctx.backend, ctx.request_id)
        yield _failed(ctx, observers, UpstreamError(f"The backend for agent '{ctx.agent}' failed."))
        return
    finally:
        dog.close()
        interrupts.waits.discard(dog)
        for observer in reversed(observers):
            observer.end()
