"""The pipeliner's protocol: replies as they arrive in reads of any size, and its
connection opened with the pool's settings (AUTH, SELECT, client name) on a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, cast

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis import asyncio as aioredis
from redis.exceptions import AuthenticationError, BusyLoadingError, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.store.pipelining import Pipeliner
from gateway.store.resp import RespProtocol, Run, bulk, bulk_string, reader


class Transport:
    """What the protocol does to its transport: writes, and an abort."""

    def __init__(self) -> None:
        self.written = b""
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written += data

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted


def protocol(transport: Transport) -> RespProtocol:
    return RespProtocol(cast(asyncio.Transport, transport), reader(encoding="utf-8"))


async def test_a_reply_split_across_reads_is_read_whole() -> None:
    transport = Transport()
    resp = protocol(transport)
    answer = resp.round_trip(b"*1\r\n$4\r\nPING\r\n", 2)
    assert transport.written == b"*1\r\n$4\r\nPING\r\n"
    for byte in b"*2\r\n$5\r\nhello\r\n:7\r\n$3\r\nend\r\n":
        assert not answer.done()
        resp.data_received(bytes([byte]))
    assert answer.result() == [["hello", 7], "end"]
    assert resp.clean


async def test_many_replies_in_one_read() -> None:
    resp = protocol(Transport())
    answer = resp.round_trip(b"", 100)
    resp.data_received(b"".join(f":{i}\r\n".encode() for i in range(100)))
    assert answer.result() == list(range(100))


async def test_an_error_reply_takes_its_place_among_the_replies() -> None:
    resp = protocol(Transport())
    answer = resp.round_trip(b"", 3)
    resp.data_received(b"+OK\r\n-WRONGTYPE not a list\r\n-NOSCRIPT No matching script\r\n")
    ok, wrong, noscript = answer.result()
    assert ok == "OK"
    assert type(wrong) is ResponseError and str(wrong) == "WRONGTYPE not a list"
    assert isinstance(noscript, NoScriptError)  # what holds.py reloads its scripts on


async def test_the_connection_closed_mid_reply_fails_the_round_trip() -> None:
    resp = protocol(Transport())
    answer = resp.round_trip(b"", 2)
    resp.data_received(b":1\r\n$10\r\nhal")
    resp.connection_lost(None)
    with pytest.raises(RedisConnectionError, match="closed by server"):
        answer.result()
    assert not resp.clean
    later = resp.round_trip(b"*1\r\n$4\r\nPING\r\n", 1)  # nothing is written on it again
    with pytest.raises(RedisConnectionError):
        later.result()


async def test_a_reset_connection_says_so() -> None:
    resp = protocol(Transport())
    answer = resp.round_trip(b"", 1)
    resp.connection_lost(ConnectionResetError(104, "Connection reset by peer"))
    with pytest.raises(RedisConnectionError, match="reset by peer"):
        answer.result()


async def test_bytes_nobody_asked_for_make_the_connection_unusable() -> None:
    resp = protocol(Transport())
    resp.data_received(b"+stray\r\n")
    assert not resp.clean  # the pipeliner opens a fresh connection rather than misread it


async def test_what_is_not_resp_fails_the_round_trip_and_closes() -> None:
    transport = Transport()
    resp = protocol(transport)
    answer = resp.round_trip(b"", 1)
    resp.data_received(b"HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(RedisConnectionError, match="Protocol error"):
        answer.result()
    assert transport.aborted and not resp.clean


async def test_abort_fails_the_waiting_round_trip() -> None:
    transport = Transport()
    resp = protocol(transport)
    answer = resp.round_trip(b"", 1)
    resp.abort()
    assert transport.aborted
    with pytest.raises(RedisConnectionError):
        answer.result()


async def test_a_round_trip_past_its_deadline_times_out_and_closes() -> None:
    transport = Transport()
    resp = protocol(transport)
    answer = resp.round_trip(b"", 1, 0.05)
    with pytest.raises(RedisTimeoutError, match=r"within 0\.05 s"):
        await answer
    assert transport.aborted and not resp.clean  # its late reply is never read


async def test_the_deadline_moves_with_each_round_trip() -> None:
    resp = protocol(Transport())
    for _ in range(3):  # each answered in time, though together they outlast one deadline
        answer = resp.round_trip(b"", 1, 0.05)
        await asyncio.sleep(0.03)
        resp.data_received(b"+OK\r\n")
        assert await answer == ["OK"]
    assert resp.clean


async def test_a_reply_that_says_the_connection_is_unusable_fails_the_round_trip() -> None:
    transport = Transport()
    resp = protocol(transport)
    answer = resp.round_trip(b"", 2)
    resp.data_received(b"+OK\r\n-LOADING Redis is loading the dataset in memory\r\n")
    with pytest.raises(BusyLoadingError):
        answer.result()
    assert transport.aborted and not resp.clean


async def test_send_answers_from_the_read_that_completes_the_replies() -> None:
    """``send``'s callback runs inside that read, the protocol already clean: the
    pipeliner writes its next round trip from there, a turn of the loop sooner."""
    transport = Transport()
    resp = protocol(transport)
    answers: list[Any] = []

    def answered(result: list[Any] | Exception) -> None:
        answers.append((result, resp.clean))
        if len(answers) == 1:  # the next round trip, written from inside the read
            resp.send(b"*1\r\n$4\r\nPING\r\n", 1, 0.05, answered)

    resp.send(b"", 2, 0.05, answered)
    resp.data_received(b":1\r\n")
    assert answers == []
    resp.data_received(b":2\r\n")
    assert answers == [([1, 2], True)]
    assert transport.written == b"*1\r\n$4\r\nPING\r\n" and not resp.clean
    resp.connection_lost(None)
    assert len(answers) == 2
    error, clean = answers[1]
    assert isinstance(error, RedisConnectionError) and not clean
    resp.send(b"", 1, None, answered)  # on a closed connection: answered at once
    assert isinstance(answers[2][0], RedisConnectionError) and transport.written.count(b"PING") == 1


@pytest.fixture
async def user(redis_client: aioredis.Redis) -> Any:
    """An ACL user of the real Redis, with its password; removed after the test."""
    name, password = f"pipeliner-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await redis_client.execute_command(
        "ACL", "SETUSER", name, "on", f">{password}", "~*", "&*", "+@all"
    )
    yield name, password
    await redis_client.execute_command("ACL", "DELUSER", name)


async def test_the_connection_has_the_pools_settings(
    redis_url: str, redis_client: aioredis.Redis, user: tuple[str, str]
) -> None:
    """AUTH with user and password, SELECT and the client name come from the pool."""
    name, password = user
    host_port = redis_url.split("://", 1)[1].split("/")[0]
    url = f"redis://{name}:{password}@{host_port}/3"
    redis = aioredis.Redis.from_url(url, client_name="gateway-pipeliner", decode_responses=True)
    pipeliner = Pipeliner(redis)
    try:
        assert await pipeliner.run([("SET", "where", "db3"), ("CLIENT", "GETNAME")]) == [
            "OK",
            "gateway-pipeliner",
        ]
        assert await pipeliner.run([("ACL", "WHOAMI")]) == [name]
        assert await redis_client.get("where") is None  # db 0
        assert await redis.get("where") == "db3"
        await redis_client.execute_command("CLIENT", "KILL", "USER", name)
        await asyncio.sleep(0.05)
        # Made afresh with the same handshake.
        assert await pipeliner.run([("GET", "where"), ("ACL", "WHOAMI")]) == ["db3", name]
        await redis.delete("where")
    finally:
        await redis.aclose(close_connection_pool=True)
    # The pool closed the pipeliner's connection at shutdown, too.
    clients = await redis_client.execute_command("CLIENT", "LIST", "TYPE", "normal")
    assert f"user={name}" not in str(clients)


async def test_a_refused_password_fails_with_a_clear_error(
    redis_url: str, user: tuple[str, str]
) -> None:
    name, _ = user
    host_port = redis_url.split("://", 1)[1].split("/")[0]
    redis = aioredis.Redis.from_url(f"redis://{name}:wrong@{host_port}/0")
    pipeliner = Pipeliner(redis)
    try:
        with pytest.raises(AuthenticationError, match="invalid username-password pair"):
            await pipeliner.run([("PING",)])
        with pytest.raises(AuthenticationError):  # each try asks again, never silently
            await pipeliner.run([("PING",)], idempotent=True)
    finally:
        await redis.aclose(close_connection_pool=True)


# Packing: runs of arguments packed apart, joined, are what hiredis packs whole.

ARGS = st.one_of(
    st.text(),  # any code point: non-ASCII, 4-byte UTF-8, lone surrogates (refused)
    st.binary(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "0", "1", "é", "\x00", "\r\n", "$3", "*2"]),
)


def packed_or_error(pack: Any, *args: Any) -> bytes | type[BaseException]:
    try:
        return cast(bytes, pack(*args))
    except Exception as exc:
        return type(exc)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.lists(st.lists(ARGS, max_size=12), min_size=1, max_size=4))
def test_runs_of_arguments_joined_are_hiredis_packing_the_whole(runs: list[list[Any]]) -> None:
    args = tuple(arg for run in runs for arg in run)
    if not args:
        return
    whole = packed_or_error(hiredis.pack_command, args)
    if whole is not UnicodeEncodeError and isinstance(whole, type):
        raise AssertionError(f"hiredis refused {args!r}: {whole}")
    first, *rest = runs

    def joined() -> bytes:
        parts = [Run.first(len(args), *first).resp]
        parts += [Run.of(*run).resp if i % 2 else bulk(tuple(run)) for i, run in enumerate(rest)]
        return b"".join(parts)

    assert packed_or_error(joined) == whole
    assert Run.of(*args).args == args


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.text() | st.binary())
def test_one_bulk_string_is_hiredis_packing_it(arg: str | bytes) -> None:
    assert packed_or_error(bulk_string, arg) == packed_or_error(bulk, (arg,))
    whole = packed_or_error(hiredis.pack_command, (arg,))
    if isinstance(whole, bytes):
        assert b"*1\r\n" + cast(bytes, bulk_string(arg)) == whole


@pytest.mark.parametrize("arg", [True, None, object(), 1j, bytearray(b"x"), [1]])
def test_what_hiredis_refuses_is_refused_alike(arg: Any) -> None:
    error = packed_or_error(hiredis.pack_command, ("SET", arg))
    assert error is TypeError
    assert packed_or_error(bulk, (arg,)) is TypeError
    assert packed_or_error(bulk_string, arg) is TypeError
    assert packed_or_error(Run.of, "SET", arg) is TypeError


def test_a_run_of_ten_or_more_arguments_loses_its_longer_header() -> None:
    for count in (9, 10, 99, 100, 120):
        args = tuple(range(count))
        assert b"*%d\r\n" % count + bulk(args) == hiredis.pack_command(args)
        assert Run.first(count + 1, *args).resp + bulk(("x",)) == hiredis.pack_command((*args, "x"))
