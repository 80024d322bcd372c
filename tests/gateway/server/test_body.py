"""Reading a request body within the limits (``gateway.server.body``)."""

from __future__ import annotations

import asyncio
from functools import partial
from unittest import mock

import pytest
from aiohttp import streams, web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.dialects.request_limits import ShapeKnown
from gateway.errors import GatewayError, InvalidRequest, PayloadTooLarge
from gateway.server.body import parse_input_now, read_json, read_parse_input
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


# The body that came with the head read without a coroutine (``parse_input_now``): the
# same answer, and the same error, as the body read as it arrives (``request.read()``).

_FAILURES: list[BaseException | None] = [
    None,
    ConnectionResetError("gone"),
    web.RequestPayloadError("bad  gzip\nstream"),
    TimeoutError("slow"),
]


def _now(request: web.Request, limits: Limits) -> object:
    try:
        got = parse_input_now(request, limits)
    except GatewayError as exc:
        return (type(exc), str(exc), exc.status, exc.code)
    assert got is not None  # its body is all buffered
    body, checked = got
    return body, type(checked)


async def _awaited(request: web.Request, limits: Limits) -> object:
    try:
        body, checked = await read_parse_input(request, limits)
    except GatewayError as exc:
        return (type(exc), str(exc), exc.status, exc.code)
    return body, type(checked)


async def _both(
    body: bytes, declared: int | None, client_max_size: int, limits: Limits, failure: int
) -> None:
    def request(eof: bool) -> web.Request:
        protocol = mock.Mock(_reading_paused=False)
        payload = streams.StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
        if body:
            payload.feed_data(body)
        failed = _FAILURES[failure]
        if eof:
            payload.feed_eof()
            if failed is not None:
                payload.set_exception(failed)
        else:
            later = payload.feed_eof if failed is None else partial(payload.set_exception, failed)
            asyncio.get_running_loop().call_soon(later)
        headers = {} if declared is None else {"Content-Length": str(declared)}
        return make_mocked_request(
            "POST",
            "/v1/chat/completions",
            headers=headers,
            payload=payload,
            client_max_size=client_max_size,
        )

    now = _now(request(eof=True), limits)
    assert now == await _awaited(request(eof=True), limits)  # the coroutine's own answer
    arriving = request(eof=False)
    if _FAILURES[failure] is None:  # (a broken stream may fail before or after its size)
        assert now == await _awaited(arriving, limits)  # as request.read() reads it
    else:
        await _awaited(arriving, limits)


@settings(max_examples=150, deadline=None)
@given(
    body=st.sampled_from([b'{"a": ["b"]}', b'{"a": [["b"]]}', b"[1, 2]", b"", b"{", b"  {}  "])
    | st.binary(max_size=40),
    extra=st.none() | st.integers(min_value=0, max_value=8),
    client_max_size=st.integers(min_value=1, max_value=64),
    most=st.integers(min_value=1, max_value=64),
    failure=st.integers(min_value=0, max_value=len(_FAILURES) - 1),
)
def test_a_buffered_body_is_read_at_once_as_it_would_be_awaited(
    body: bytes, extra: int | None, client_max_size: int, most: int, failure: int
) -> None:
    limits = Limits(max_body_bytes=most, max_json_depth=2, max_text_chars=100)
    declared = None if extra is None else len(body) + extra
    asyncio.run(_both(body, declared, client_max_size, limits, failure))
