"""Upstream.events: an upstream's SSE body as events, and a malformed one as an UpstreamError."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import pytest
from gateway_plugins.backends.http import HttpOptions, Upstream

from gateway.errors import UpstreamError
from gateway.sse import ServerSentEvent


class _Body:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


def answer(*chunks: bytes) -> aiohttp.ClientResponse:
    """A response whose body arrives in ``chunks``."""
    resp: Any = type("Answer", (), {"content": _Body(list(chunks))})()
    return cast(aiohttp.ClientResponse, resp)


def upstream(max_line_bytes: int = 1024) -> Upstream:
    return Upstream("up", HttpOptions(base_url="http://upstream", max_line_bytes=max_line_bytes))


async def test_events_split_anywhere_and_the_last_flushed_at_the_end() -> None:
    reads = [r async for r in upstream().events(answer(b"data: 1\n", b"\ndata: 2", b"\n"))]
    assert reads == [[ServerSentEvent("1")], [ServerSentEvent("2")]]


async def test_events_come_a_list_per_read_and_never_an_empty_one() -> None:
    body = answer(b"data: 1\n\ndata: 2\n\n", b": ping\n\n", b"data: 3\n\n")
    reads = [r async for r in upstream().events(body)]
    assert reads == [[ServerSentEvent("1"), ServerSentEvent("2")], [ServerSentEvent("3")]]


async def test_a_line_past_max_line_bytes_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="malformed"):
        [e async for e in upstream(16).events(answer(b"data: ", b"x" * 40))]
