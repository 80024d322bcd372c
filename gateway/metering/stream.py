"""The metered stream: count what passes, price every usage report, stop at the output cap."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from gateway import tokens
from gateway.events import (
    Batch,
    Completed,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    Usage,
)
from gateway.metering.hold import Hold
from gateway.metering.tally import Tally

log = logging.getLogger("gateway.metering")

_DELTAS = (TextDelta, ReasoningDelta, ToolCallArgumentsDelta)  # each a token at least


async def metered(batches: AsyncIterator[Batch], hold: Hold) -> AsyncIterator[Batch]:
    """Count what passes, report usage with every answer, and stop at the output cap.

    ``batches`` keep to the stream contract (``stream_contract.checked``): the
    terminal event comes last. (The pipeline does this inside the contract check,
    with a ``Counter``: a layer less for every read.)
    """
    count = Counter(hold)
    async for batch in batches:
        batch = count(batch)
        yield batch
        if count.ended:
            return


class Counter:
    """``metered``'s work, a batch at a time: ``count(batch)`` is the batch to pass on
    (usage priced, an estimate before a ``Completed`` that came without one, cut at
    the output cap); after it, ``ended`` says whether the stream must end there."""

    __slots__ = ("_cap", "_hold", "ended", "tally")

    def __init__(self, hold: Hold) -> None:
        self._hold = hold
        if hold.counted:  # a fallback attempt starts afresh
            hold.tally = Tally()
        hold.counted = True
        self.tally = hold.tally
        self._cap = hold.output_cap
        self.ended = False

    def __call__(self, batch: Batch) -> Batch:
        tally, cap, hold = self.tally, self._cap, self._hold
        # Most events: ``Tally.add``'s and ``text_weight``'s work inline (the same figures,
        # added in the same order), without two calls per chunk, in locals that go back
        # to the tally before any other event and at the end of the batch.
        deltas, weight = tally.deltas, tally.weight
        for index, event in enumerate(batch):
            if type(event) is TextDelta and deltas < cap:
                text = event.text
                weight += len(text) / _PER_TOKEN if text.isascii() else _weigh(text)
                deltas += 1
                continue
            tally.deltas, tally.weight = deltas, weight
            if isinstance(event, _DELTAS):
                if deltas >= cap:
                    # This delta (a token at least) would pass the cap, and what was reserved.
                    log.warning("request %s passed its output cap: ended", hold.record.request_id)
                    self.ended = True
                    return (*batch[:index], *_end(hold, Completed("length")))
            elif isinstance(event, Completed) and tally.usage is None:
                return (*batch[:index], *_end(hold, event))
            elif isinstance(event, Usage):
                event = hold.priced(event)
                batch = (*batch[:index], event, *batch[index + 1 :])
            tally.add(event)
            deltas, weight = tally.deltas, tally.weight
        tally.deltas, tally.weight = deltas, weight
        return batch


_weigh, _PER_TOKEN = tokens.text_weight, tokens.ASCII_PER_TOKEN


def _end(hold: Hold, completed: Completed) -> Batch:
    """The last events of an answer that reported no usage: an estimate, then ``completed``."""
    usage = hold.usage(answered=True)
    hold.tally.add(usage)
    hold.tally.add(completed)
    return (usage, completed)
