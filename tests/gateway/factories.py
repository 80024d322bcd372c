"""Small factories for unit tests: call contexts, scripted event streams, collectors."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from decimal import Decimal
from pathlib import Path

import gateway_plugins
import pytest

import gateway
from gateway.events import Batch, Event
from gateway.invocation import AgentInvocation
from gateway.plugin import CallContext
from gateway.route import Pricing, Route
from tests.conftest import invocation


def pricing(
    input: str = "0",
    output: str = "0",
    cached_input: str | None = None,
    cache_write: str | None = None,
) -> Pricing:
    """A ``Pricing`` from decimal strings (credits per token)."""
    return Pricing(
        input=Decimal(input),
        output=Decimal(output),
        cached_input=None if cached_input is None else Decimal(cached_input),
        cache_write=None if cache_write is None else Decimal(cache_write),
    )


def context(
    inv: AgentInvocation | None = None,
    *,
    route: Route | None = None,
    key_id: str = "key_test",
    request_id: str = "req_test",
    charge_id: str = "charge_1",
) -> CallContext:
    inv = inv if inv is not None else invocation()
    return CallContext(
        request_id=request_id,
        key_id=key_id,
        agent=inv.agent,
        backend="echo",
        model=inv.agent,
        route=route if route is not None else Route(backend="echo"),
        charge_id=charge_id,
    )


async def stream(events: Iterable[Event]) -> AsyncIterator[Batch]:
    """A scripted backend stream yielding ``events`` in order, a batch of one each."""
    for event in events:
        yield (event,)


async def batches(events: Iterable[Event]) -> AsyncIterator[Batch]:
    """A checked stream (``stream_contract.checked``) of ``events``, a batch of one each."""
    for event in events:
        yield (event,)


async def close(events: AsyncIterator[object]) -> None:
    """Close a stream early, as the server does when the client goes away."""
    assert isinstance(events, AsyncGenerator)
    await events.aclose()


async def collect(batches: AsyncIterator[Batch]) -> list[Event]:
    """The events of a stream of batches, in order."""
    out: list[Event] = []
    async for batch in batches:
        out += batch
    return out


_OURS = tuple(str(Path(package.__file__).parent) for package in (gateway, gateway_plugins))


def asked_for_the_loop(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The calls of ``asyncio.get_running_loop`` from the gateway's and its plugins' code
    from now on, by the function that called (on Python 3.11 each is a ``getpid``
    system call: the gateway keeps the loop instead)."""
    asked: list[str] = []
    real = asyncio.get_running_loop

    def counted() -> asyncio.AbstractEventLoop:
        caller = sys._getframe(1).f_code
        if caller.co_filename.startswith(_OURS):
            asked.append(caller.co_qualname)
        return real()

    monkeypatch.setattr(asyncio, "get_running_loop", counted)
    return asked
