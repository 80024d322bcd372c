"""Hostile and broken clients over real HTTP on loopback: every answer a clean 4xx/503.

The gateway runs in a thread of its own (embedded store) with small limits and
the server settings ``gateway serve`` uses (``runner_kwargs``), so that these
tests can drive it with raw sockets and blocking clients, and with hypothesis.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.server.app import create_app
from gateway.server.connection import GatewayRunner
from gateway.server.keys import GATEWAY
from gateway.server.runner_limits import runner_kwargs
from tests.conftest import free_port, make_config
from tests.gateway.test_hostile_input import (
    CHAT_BASE,
    JSON,
    MESSAGES_BASE,
    RESPONSES_BASE,
    mutated,
)

T = TypeVar("T")

LIMITS = """
limits:
  max_body_bytes: 2000000
  max_json_depth: 16
  max_input_items: 8
  max_tools: 4
  max_text_chars: 1500000
  body_read_timeout: 0.5
  max_header_bytes: 1024
  max_headers: 20
  keepalive_timeout: 1.0
  client_write_timeout: 0.5
  max_connections: {max_connections}
"""

CONFIG = """
backends:
  echo: {{type: echo}}
  slow: {{type: echo, chunk_delay: 0.2}}
routes:
  echo:
    backend: echo
  slow:
    backend: slow
"""

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
ENDPOINTS = {
    CHAT: CHAT_BASE,
    "/v1/responses": RESPONSES_BASE,
    MESSAGES: MESSAGES_BASE,
    "/v1/messages/count_tokens": MESSAGES_BASE,
}
HELLO = {"model": "echo", "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}]}


class ThreadGateway:
    """A gateway serving from its own event loop in a thread."""

    def __init__(self, max_connections: int = 64) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        text = CONFIG.format() + LIMITS.format(max_connections=max_connections)
        self.config = make_config(text, "embedded")
        self.port = free_port()
        self.runner = self.run(self._start())
        self.gateway = self.runner.app[GATEWAY]
        _, self.key = self.run(self.gateway.store.create_key("t", balance=10**12))

    async def _start(self) -> web.AppRunner:
        runner = GatewayRunner(
            create_app(self.config),
            handler_cancellation=True,
            access_log=None,
            **runner_kwargs(self.config.limits),
        )
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.run(self.runner.cleanup(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def post(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            all_headers = {
                "Authorization": f"Bearer {self.key}",
                "Content-Type": "application/json",
                **(headers or {}),
            }
            conn.request("POST", path, body=body, headers=all_headers)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def raw(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def head(self, path: str, length: int, extra: str = "") -> bytes:
        return (
            f"POST {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {self.key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n"
        ).encode()


@pytest.fixture(scope="module")
def gw() -> Iterator[ThreadGateway]:
    gateway = ThreadGateway()
    yield gateway
    gateway.close()


def assert_dialect_error(path: str, status: int, body: bytes) -> dict[str, Any]:
    """The error object, in OpenAI's shape, or Anthropic's under /v1/messages."""
    assert 400 <= status < 600 and status != 500, (status, body[:300])
    parsed = orjson.loads(body)
    if path.startswith(MESSAGES):
        assert parsed["type"] == "error" and set(parsed) == {"type", "error", "request_id"}
        error: dict[str, Any] = parsed["error"]
        assert set(error) == {"type", "message"} and error["message"]
    else:
        assert set(parsed) == {"error"}
        error = parsed["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def read_until_closed(sock: socket.socket, within: float) -> bytes:
    """Everything the server sends until it closes the connection (fails after ``within``)."""
    sock.settimeout(within)
    data = b""
    deadline = time.monotonic() + within
    with contextlib.suppress(ConnectionResetError):
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
        raise AssertionError("the server kept the connection open")
    return data


# Request limits, in each dialect's shape


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
def test_request_limits_are_4xx_in_the_dialects_shape(gw: ThreadGateway, path: str) -> None:
    one = {"role": "user", "content": "hi"}
    tool = (
        {"name": "f", "input_schema": {"type": "object"}}
        if path == MESSAGES
        else {"type": "function", "function": {"name": "f"}}
    )
    deep: object = "x"
    for _ in range(20):
        deep = [deep]
    cases: list[tuple[dict[str, Any], int, str]] = [
        (HELLO | {"messages": [one] * 9}, 400, "messages"),
        (HELLO | {"tools": [tool] * 5}, 400, "tools"),
        (HELLO | {"metadata": deep}, 400, "nested deeper"),
        (HELLO | {"system": "a" * 1_500_001}, 413, "characters"),
    ]
    for body, status, words in cases:
        got, _, raw = gw.post(path, orjson.dumps(body))
        assert got == status, raw[:200]
        assert words in assert_dialect_error(path, got, raw)["message"]
    got, _, raw = gw.post(path, b"x" * 2_000_001)
    assert got == 413
    assert_dialect_error(path, got, raw)


# Slow and silent clients


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
def test_a_body_that_does_not_arrive_in_time_is_a_408_and_the_connection_closes(
    gw: ThreadGateway, path: str
) -> None:
    with gw.raw() as sock:
        sock.sendall(gw.head(path, 100) + b'{"model": "echo"')
        started = time.monotonic()
        data = read_until_closed(sock, 5)
    assert time.monotonic() - started < 3
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), head
    assert b"did not arrive within 0.5 seconds" in body
    assert_dialect_error(path, 408, body)


def test_a_request_head_that_does_not_arrive_in_time_closes_the_connection(
    gw: ThreadGateway,
) -> None:
    with gw.raw() as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-Slow: ")
        started = time.monotonic()
        assert read_until_closed(sock, 5) == b""
    assert time.monotonic() - started < 3  # keepalive_timeout: 1 s


def test_an_idle_keep_alive_connection_is_closed(gw: ThreadGateway) -> None:
    body = orjson.dumps(HELLO)
    with gw.raw() as sock:
        sock.sendall(gw.head("/v1/messages/count_tokens", len(body)) + body)
        started = time.monotonic()
        data = read_until_closed(sock, 5)
    assert data.startswith(b"HTTP/1.1 200")
    assert time.monotonic() - started < 3


def test_a_client_that_stops_reading_a_stream_is_cut_off_and_its_call_settles(
    gw: ThreadGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "gateway.server.streaming")
    words = "ab " * 200_000  # about 40 MB of chunks: far more than the socket buffers hold
    body = orjson.dumps(
        {
            "model": "echo",
            "stream": True,
            "max_tokens": 300_000,
            "messages": [{"role": "user", "content": words}],
        }
    )
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    with sock:
        sock.connect(("127.0.0.1", gw.port))
        sock.sendall(gw.head(CHAT, len(body)) + body)
        assert sock.recv(12).startswith(b"HTTP/1.1 200")
        deadline = time.monotonic() + 10
        while gw.gateway.active_calls and time.monotonic() < deadline:
            time.sleep(0.05)  # not reading: the gateway's writes stop draining
        assert gw.gateway.active_calls == 0
        assert "client stopped reading for 0.5s" in caplog.text
        with contextlib.suppress(ConnectionResetError):
            read_until_closed(sock, 5)  # the gateway aborted the connection


# Request heads


@pytest.mark.parametrize(
    "extra",
    [
        "X-Big: " + "a" * 2000 + "\r\n",
        "".join(f"X-H{i}: v\r\n" for i in range(40)),
        "Authorization: Bearer " + "k" * 5000 + "\r\n",
    ],
)
def test_oversized_request_heads_are_refused_without_a_500(gw: ThreadGateway, extra: str) -> None:
    body = orjson.dumps(HELLO)
    with gw.raw() as sock:
        sock.sendall(gw.head(CHAT, len(body), extra) + body)
        data = read_until_closed(sock, 5)
    status = int(data.split(b" ", 2)[1])
    assert status in (400, 431), data[:200]


def test_an_oversized_request_line_is_refused_without_a_500(gw: ThreadGateway) -> None:
    with gw.raw() as sock:
        sock.sendall(b"GET /v1/models?" + b"q" * 5000 + b" HTTP/1.1\r\nHost: gw\r\n\r\n")
        data = read_until_closed(sock, 5)
    assert int(data.split(b" ", 2)[1]) in (400, 414, 431), data[:200]


DOORS = [CHAT, "/v1/responses", MESSAGES]


@pytest.mark.parametrize("path", DOORS)
@pytest.mark.parametrize("header", [b"Authorization: Bearer ", b"x-api-key: ", b"api-key: "])
@pytest.mark.parametrize("credential", [b"\xff", b"\xc3\xa9", b"sk-gw-\xff\xfe", b"sk-gw-a\tb"])
def test_a_credential_no_key_could_have_is_a_401_in_the_dialects_shape(
    gw: ThreadGateway, path: str, header: bytes, credential: bytes
) -> None:
    body = orjson.dumps(HELLO)
    head = f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Length: {len(body)}\r\n".encode()
    with gw.raw() as sock:
        sock.sendall(head + header + credential + b"\r\nConnection: close\r\n\r\n" + body)
        data = read_until_closed(sock, 5)
    status_line, _, rest = data.partition(b"\r\n")
    status = int(status_line.split()[1])
    assert status == 401, data[:300]
    error = assert_dialect_error(path, status, rest.partition(b"\r\n\r\n")[2])
    assert error["type"] == "authentication_error"


def tool_request(path: str, name: object, schema: object) -> dict[str, Any]:
    """HELLO with one tool of this name and schema, in the door's dialect."""
    tool: dict[str, Any]
    if path == MESSAGES:
        tool = {"name": name, "input_schema": schema}
    elif path == CHAT:
        tool = {"type": "function", "function": {"name": name, "parameters": schema}}
    else:
        tool = {"type": "function", "name": name, "parameters": schema}
    if path == "/v1/responses":
        return {"model": "echo", "input": "hello", "tools": [tool]}
    return HELLO | {"tools": [tool]}


BAD_TOOLS: list[tuple[object, object, str]] = [  # name, schema, the param's last words
    ("f", {"type": "object", "properties": ["q"]}, "properties"),
    ("f", {"type": "object", "properties": "q"}, "properties"),
    ("f", {"type": "object", "properties": {"q": 3}}, "properties.q"),
    ("f", {"type": 7}, "type"),
    ("f", {"type": "object", "properties": {"q": {"type": ["string", 1]}}}, "q.type"),
    ("f", {"type": "object", "required": "q"}, "required"),
    ("f", {"type": "array", "items": [1]}, "items[0]"),
    ("f", {"type": "array", "minItems": "many"}, "minItems"),
    ("f", {"anyOf": {"type": "string"}}, "anyOf"),
    ("f", [{"type": "object"}], ""),
    ("f", "object", ""),
    (None, {"type": "object"}, "name"),
    ("", {"type": "object"}, "name"),
    (7, {"type": "object"}, "name"),
    ("two words", {"type": "object"}, "name"),
]


@pytest.mark.parametrize("path", DOORS)
def test_an_invalid_tool_definition_is_a_400_in_the_dialects_shape(
    gw: ThreadGateway, path: str
) -> None:
    # A 'properties' that is not an object crashed the echo backend: a 502 and a traceback.
    for name, schema, where in BAD_TOOLS:
        status, _, raw = gw.post(path, orjson.dumps(tool_request(path, name, schema)))
        assert status == 400, (name, schema, raw[:300])
        error = assert_dialect_error(path, status, raw)
        if path != MESSAGES:
            assert error["param"].startswith("tools[0]") and error["param"].endswith(where), error


@pytest.mark.parametrize("path", DOORS)
def test_a_rich_valid_tool_schema_is_called(gw: ThreadGateway, path: str) -> None:
    schema = {
        "type": "object",
        "properties": {
            "q": {"type": ["string", "null"], "minLength": 2},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 1_000_000_000},
            "any": True,
            "n": {"type": "integer", "exclusiveMinimum": 3},
        },
        "required": ["q", "tags", "n"],
        "additionalProperties": False,
        "$defs": {"x": {"oneOf": [{"type": "string"}, {"type": "number"}]}},
    }
    status, _, raw = gw.post(path, orjson.dumps(tool_request(path, "lookup_v2", schema)))
    assert status == 200, raw[:300]
    assert b"lookup_v2" in raw


# The bound on requests in flight


def test_over_the_bound_requests_get_a_polite_503_in_the_dialects_shape() -> None:
    gw = ThreadGateway(max_connections=3)
    long = [{"role": "user", "content": "hello " * 100}]  # 20 s of slow echo
    body = orjson.dumps(HELLO | {"model": "slow", "stream": True, "messages": long})
    held: list[socket.socket] = []
    try:
        for _ in range(3):
            sock = gw.raw()
            held.append(sock)
            sock.sendall(gw.head(CHAT, len(body)) + body)
            assert sock.recv(12).startswith(b"HTTP/1.1 200")
        status, headers, raw = gw.post(CHAT, orjson.dumps(HELLO))
        assert status == 503 and headers["Retry-After"] == "1"
        assert assert_dialect_error(CHAT, status, raw)["code"] == "overloaded"
        status, headers, raw = gw.post(MESSAGES, orjson.dumps(HELLO))
        assert status == 529 and headers["Retry-After"] == "1"  # Anthropic's "overloaded"
        assert assert_dialect_error(MESSAGES, status, raw)["type"] == "overloaded_error"
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200  # probes are not counted
        conn.close()
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status, _, _ = gw.post(CHAT, orjson.dumps(HELLO | {"max_tokens": 5}))
        if status == 200:
            break
        time.sleep(0.05)
    assert status == 200  # the slots came back when the clients left
    gw.close()


# Anything at all, through HTTP


def _dumps(value: object) -> bytes:
    """JSON text as a careless client writes it: NaN, lone surrogates and big integers kept."""
    return json.dumps(value).encode()


FUZZ = settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


@pytest.mark.parametrize("path", sorted(ENDPOINTS))
def test_any_body_gets_a_success_or_a_clean_4xx(gw: ThreadGateway, path: str) -> None:
    base = ENDPOINTS[path] | {"model": "echo", "stream": False}
    if path.endswith("count_tokens"):
        base = {k: v for k, v in base.items() if k != "stream"}

    @FUZZ
    @given(
        st.binary(max_size=100)
        | st.builds(_dumps, JSON)
        | st.builds(_dumps, mutated(base))
        | st.builds(lambda b: _dumps(b)[:-1] + b',"model":"echo","model":1}', mutated(base))
        | st.just(b'{"model": "\\ud800", "messages": "\\udfff"}')
        | st.just(b'{"model": "echo", "temperature": NaN}')
    )
    def check(raw: bytes) -> None:
        status, _, body = gw.post(path, raw)
        if status >= 400:
            assert status < 500, body[:300]
            assert_dialect_error(path, status, body)

    check()
