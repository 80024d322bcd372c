from __future__ import annotations

import itertools
from collections.abc import Iterable
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import sse
from gateway.sse import (
    DONE,
    MAX_LINE,
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


# ``feed``'s fast path: a read of whole one-line ``data:`` events (LF line ends only), split
# at once. It must read exactly as line by line, errors included: the reference is the
# same decoder with the fast path turned off, fed the same reads (and a byte at a time,
# which never holds a whole event).


LF_LINES = st.one_of(
    st.builds(lambda v: b"data: " + v, st.binary(max_size=12).map(lambda b: b.replace(b"\n", b""))),
    st.builds(lambda v: b"data: " + v, st.binary(max_size=12)),  # a stray LF inside
    st.sampled_from([b"", b"data:", b"data:x", b"event: named", b": comment", b"data: \xe2\x82"]),
    st.sampled_from(["café", "😀", "日本", '"\\'])
    .map(lambda t: b"data: " + t.encode())
    .flatmap(lambda line: st.integers(0, len(line)).map(lambda cut: line[:cut])),
)


@st.composite
def lf_stream(draw: st.DrawFn) -> list[bytes]:
    """LF-only SSE, mostly one-line data events, cut into reads anywhere."""
    lines = draw(st.lists(LF_LINES, max_size=16))
    blank = draw(st.lists(st.booleans(), min_size=len(lines), max_size=len(lines)))
    ends = [b"\n\n" if blank_follows else b"\n" for blank_follows in blank]
    raw = b"".join(line + end for line, end in zip(lines, ends, strict=True))
    points = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=4)))
    bounds = [0, *points, len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds)]


def decode_limited(chunks: Iterable[bytes], max_line: int = MAX_LINE) -> list[ServerSentEvent]:
    decoder = SSEDecoder(max_line)
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return events


def line_by_line(chunks: list[bytes], max_line: int = MAX_LINE) -> list[ServerSentEvent]:
    with mock.patch.object(sse, "_one_line_data", lambda raw: None):
        return decode_limited(chunks, max_line)


@settings(max_examples=500, deadline=None)
@given(lf_stream())
def test_whole_events_of_a_read_decode_as_line_by_line(chunks: list[bytes]) -> None:
    assert decode_limited(chunks) == line_by_line(chunks)
    assert decode_limited(chunks) == line_by_line([bytes([b]) for c in chunks for b in c])
    assert all(type(e) is ServerSentEvent for e in decode_limited(chunks))


@settings(max_examples=300, deadline=None)
@given(lf_stream(), st.integers(1, 24))
def test_whole_events_of_a_read_keep_the_line_limit(chunks: list[bytes], max_line: int) -> None:
    try:
        fast = decode_limited(chunks, max_line)
    except SSEDecodeError:
        with pytest.raises(SSEDecodeError):
            line_by_line(chunks, max_line)
    else:
        assert fast == line_by_line(chunks, max_line)


@given(st.lists(st.binary(max_size=16).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))))
def test_whole_events_decode_each_line_as_its_own_bytes(values: list[bytes]) -> None:
    raw = b"".join(b"data: " + v + b"\n\n" for v in values)
    events = SSEDecoder().feed(raw)  # one read: the fast path when there is an event
    assert events == [ServerSentEvent(v.decode("utf-8", "replace")) for v in values]


def test_a_read_after_a_begun_event_takes_the_line_by_line_path() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"data: b\n\ndata: c\n\n") == [
        ServerSentEvent("a\nb"),
        ServerSentEvent("c"),
    ]
    assert decoder.feed(b"event: x\n") == []
    assert decoder.feed(b"data: d\n\ndata: e\n\ndata: f") == [
        ServerSentEvent("d", "x"),
        ServerSentEvent("e"),
    ]
    assert decoder.close() == [ServerSentEvent("f")]


@settings(max_examples=500, deadline=None)
@given(lf_stream())
def test_messages_are_the_data_of_the_events_feed_would_make(chunks: list[bytes]) -> None:
    fast, reference = SSEDecoder(), SSEDecoder()
    for chunk in chunks:
        expected = reference.feed(chunk)
        data = fast.messages(chunk)
        if data is None:
            assert fast.feed(chunk) == expected
        else:
            assert [ServerSentEvent(d) for d in data] == expected
    assert fast.close() == reference.close()


def test_messages_are_read_only_from_whole_events_of_an_unbegun_stream() -> None:
    decoder = SSEDecoder()
    assert decoder.messages(b'data: {"a":1}\n\ndata: b\n\n') == ['{"a":1}', "b"]
    assert decoder.messages(b"data: \n\n") == [""]
    assert decoder.messages(b"data: caf\xc3\xa9 \xff\n\n") == ["caf\u00e9 \ufffd"]
    for chunk in (
        b"data: a\n\ndata: b",  # ends inside an event
        b"data: a\n\ndata: b\n",
        b"data: a\ndata: b\n\n",  # an event of two lines
        b"event: x\ndata: a\n\n",
        b"data: a\n\n: comment\n\n",
        b"data: a\r\n\r\n",
        b"data:a\n\n",
        b"data: a\n\n\n",
    ):
        assert decoder.messages(chunk) is None, chunk
    assert decoder.feed(b"data: a\n") == []
    assert decoder.messages(b"\ndata: b\n\n") is None  # an event begun: fed instead
    assert decoder.messages(b"data: b\n\n") is None
