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
    terminal event comes last.
    """
    tally = hold.tally = Tally()  # a fallback attempt starts afresh
    cap = hold.output_cap
    weigh, per_token = tokens.text_weight, tokens.ASCII_PER_TOKEN
    async for batch in batches:
        for index, event in enumerate(batch):
            if type(event) is TextDelta and tally.deltas < cap:
                # Most events: ``Tally.add``'s and ``text_weight``'s work inline (the same
                # figures, added in the same order), without two calls per chunk.
                text = event.text
                tally.weight += len(text) / per_token if text.isascii() else weigh(text)
                tally.deltas += 1
                continue
            if isinstance(event, _DELTAS):
                if tally.deltas >= cap:
                    # This delta (a token at least) would pass the cap, and what was reserved.
                    log.warning("request %s passed its output cap: ended", hold.record.request_id)
                    yield (*batch[:index], *_end(hold, Completed("length")))
                    return
            elif isinstance(event, Completed) and tally.usage is None:
                batch = (*batch[:index], *_end(hold, event))
                break
            elif isinstance(event, Usage):
                event = hold.priced(event)
                batch = (*batch[:index], event, *batch[index + 1 :])
            tally.add(event)
        yield batch


def _end(hold: Hold, completed: Completed) -> Batch:
    """The last events of an answer that reported no usage: an estimate, then ``completed``."""
    usage = hold.usage(answered=True)
    hold.tally.add(usage)
    hold.tally.add(completed)
    return (usage, completed)
