"""Reading a request body within the limits (``gateway.server.body``)."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
from aiohttp import streams, web
from aiohttp.test_utils import make_mocked_request

from gateway.dialects.request_limits import ShapeKnown
from gateway.errors import InvalidRequest, PayloadTooLarge
from gateway.server.body import read_json, read_parse_input
from gateway.settings import Limits


def _request(chunks: list[bytes], *, eof: bool = True, client_max_size: int = 1024) -> web.Request:
    protocol = mock.Mock(_reading_paused=False)
    payload = streams.StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
    for chunk in chunks:
        payload.feed_data(chunk)
    if eof:
        payload.feed_eof()
    return make_mocked_request(
        "POST", "/v1/chat/completions", payload=payload, client_max_size=client_max_size
    )


@pytest.mark.parametrize("eof", [True, False])
async def test_a_body_in_several_chunks_is_read_whole(eof: bool) -> None:
    request = _request([b'{"a": ', b"[1, 2]", b"}"], eof=eof)
    if not eof:
        asyncio.get_running_loop().call_soon(request.content.feed_eof)
    assert await read_json(request, 1024) == {"a": [1, 2]}
    assert request.content.at_eof()


@pytest.mark.parametrize("eof", [True, False])
async def test_a_body_beyond_client_max_size_is_a_413(eof: bool) -> None:
    request = _request([b"[" + b"1," * 40, b"1]"], eof=eof, client_max_size=64)
    if not eof:
        asyncio.get_running_loop().call_soon(request.content.feed_eof)
    with pytest.raises(PayloadTooLarge, match="64 bytes"):
        await read_json(request, 64)


async def test_an_empty_buffered_body_is_a_400() -> None:
    with pytest.raises(InvalidRequest, match="empty"):
        await read_json(_request([]), 1024)


async def test_a_front_doors_body_comes_with_the_limits_its_parser_checks() -> None:
    limits = Limits(max_json_depth=2, max_text_chars=100)
    body, checked = await read_parse_input(_request([b'{"a": ["b"]}']), limits)
    assert body == {"a": ["b"]} and type(checked) is ShapeKnown  # 2 brackets: no walk
    body, checked = await read_parse_input(_request([b'{"a": [["b"]]}']), limits)
    assert body == {"a": [["b"]]} and checked is limits  # 3 brackets: the parser walks it
