from __future__ import annotations

from collections.abc import Iterable

import pytest

from gateway.sse import (
    DONE,
    ServerSentEvent,
    SSEDecodeError,
    SSEDecoder,
    data_frame,
    event_frame,
)

# An upstream stream mixing every line ending, comments, unknown fields,
# multi-line data, an ``event:`` line and multi-byte UTF-8.
STREAM = (
    b": keep-alive comment\r\n"
    b'data: {"a":1}\n'
    b"\n"
    b"event: error\r"
    b"data: line1\r"
    b"data:  two spaces\r"
    b"\r"
    b"data: caf\xc3\xa9 \xf0\x9f\x98\x80\r\n"
    b"id: 7\r\n"
    b"retry: 100\r\n"
    b"\r\n"
    b"event: ignored\n"
    b"\n"
    b"data\n"
    b"\n"
    b"data:no-space\n"
    b": comment between data lines\n"
    b"data:\n"
    b"unknown: field\n"
    b"\n"
    b"data: crlf one\r\n"
    b"data: crlf two\r\n"
    b"\r\n"
    b"data: [DONE]\n"
    b"\n"
)

EXPECTED = [
    ServerSentEvent('{"a":1}'),
    ServerSentEvent("line1\n two spaces", "error"),
    ServerSentEvent("caf\u00e9 \U0001f600"),
    ServerSentEvent(""),
    ServerSentEvent("no-space\n"),
    ServerSentEvent("crlf one\ncrlf two"),
    ServerSentEvent("[DONE]"),
]


def decode(chunks: Iterable[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return events


def test_whole_stream() -> None:
    assert decode([STREAM]) == EXPECTED


@pytest.mark.parametrize("at", range(len(STREAM) + 1))
def test_split_at_every_byte(at: int) -> None:
    assert decode([STREAM[:at], STREAM[at:]]) == EXPECTED


def test_split_at_every_byte_with_an_empty_chunk_between() -> None:
    for at in range(len(STREAM) + 1):
        assert decode([STREAM[:at], b"", STREAM[at:]]) == EXPECTED, at


def test_single_bytes() -> None:
    assert decode(STREAM[i : i + 1] for i in range(len(STREAM))) == EXPECTED


def test_split_at_every_pair_of_positions() -> None:
    n = len(STREAM)
    for a in range(0, n + 1, 3):
        for b in range(a, n + 1, 7):
            assert decode([STREAM[:a], STREAM[a:b], STREAM[b:]]) == EXPECTED, (a, b)


def test_events_are_yielded_as_soon_as_complete() -> None:
    decoder = SSEDecoder()
    assert list(decoder.feed(b"data: one\n")) == []
    assert list(decoder.feed(b"\ndata: two")) == [ServerSentEvent("one")]
    assert list(decoder.feed(b"\n\n")) == [ServerSentEvent("two")]


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    # A CR at the end of one chunk and LF at the start of the next must not
    # count as two line ends (that would be a blank line dispatching early).
    decoder = SSEDecoder()
    events = [
        *decoder.feed(b"data: a\r"),
        *decoder.feed(b"\ndata: b\r"),
        *decoder.feed(b"\n\r"),
        *decoder.feed(b"\n"),
    ]
    assert events == [ServerSentEvent("a\nb")]


def test_empty_chunk_between_cr_and_lf_keeps_them_one_line_end() -> None:
    decoder = SSEDecoder()
    events = [*decoder.feed(b"data: a\r"), *decoder.feed(b""), *decoder.feed(b"\ndata: b\n\n")]
    assert events == [ServerSentEvent("a\nb")]


def test_cr_then_cr_is_a_blank_line() -> None:
    decoder = SSEDecoder()
    assert list(decoder.feed(b"data: a\r")) == []
    assert list(decoder.feed(b"\r")) == [ServerSentEvent("a")]


def test_event_name_resets_after_dispatch() -> None:
    assert decode([b"event: delta\ndata: 1\n\ndata: 2\n\n"]) == [
        ServerSentEvent("1", "delta"),
        ServerSentEvent("2", "message"),
    ]


@pytest.mark.parametrize(
    "tail", [b"data: last", b"data: last\n", b"data: last\r", b"data: last\r\n"]
)
def test_close_flushes_a_last_event_without_blank_line(tail: bytes) -> None:
    decoder = SSEDecoder()
    assert list(decoder.feed(b"data: first\n\n" + tail)) == [ServerSentEvent("first")]
    assert list(decoder.close()) == [ServerSentEvent("last")]


def test_close_with_nothing_pending_yields_nothing() -> None:
    decoder = SSEDecoder()
    assert list(decoder.feed(b"data: x\n\n: trailing comment\n")) == [ServerSentEvent("x")]
    assert list(decoder.close()) == []


def test_oversized_line_raises() -> None:
    decoder = SSEDecoder(max_line=16)
    with pytest.raises(SSEDecodeError):
        list(decoder.feed(b"data: " + b"x" * 20))


def test_oversized_line_arriving_in_pieces_raises() -> None:
    decoder = SSEDecoder(max_line=16)
    assert list(decoder.feed(b"data: 0123456789")) == []  # 16 bytes: at the limit
    with pytest.raises(SSEDecodeError):
        list(decoder.feed(b"x"))


def test_many_short_lines_do_not_count_as_one_long_line() -> None:
    decoder = SSEDecoder(max_line=16)
    chunk = b"data: 12345\n\n" * 50
    assert len(list(decoder.feed(chunk))) == 50


def test_data_frame() -> None:
    assert data_frame(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert DONE == b"data: [DONE]\n\n"


def test_event_frame() -> None:
    frame = event_frame("response.created", b'{"x":"\xc3\xa9"}')
    assert frame == b'event: response.created\ndata: {"x":"\xc3\xa9"}\n\n'


def test_frames_round_trip_through_the_decoder() -> None:
    frames = data_frame(b"[1]") + event_frame("done", b"{}") + DONE
    assert decode([frames]) == [
        ServerSentEvent("[1]"),
        ServerSentEvent("{}", "done"),
        ServerSentEvent("[DONE]"),
    ]


def test_one_line_events_of_one_read_are_named_tuples_of_their_own() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"data: a\n\nevent: x\ndata: b\n\ndata: c\n")
    events += decoder.feed(b"\ndata: d\ndata: e\n\n")
    assert events == [
        ServerSentEvent("a"),
        ServerSentEvent("b", "x"),
        ServerSentEvent("c"),
        ServerSentEvent("d\ne"),
    ]
    assert all(type(e) is ServerSentEvent for e in events)
    assert [e.event for e in events] == ["message", "x", "message", "message"]
