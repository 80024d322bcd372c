"""Malformed requests against a real ``gateway serve``: no secret in any answer or log
line, and a client's fault costs one calm log line, never a traceback.

The gateway runs as its own process (``gateway serve``, its own log set-up) with
its log captured at DEBUG, so that every line anyone writes (aiohttp, asyncio,
the gateway) is checked; the requests are raw bytes on a socket, since no HTTP
client would send them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.integration import processes

ADMIN_TOKEN = "admin-token-for-the-faults-test-0123"
UPSTREAM_KEY = "upstream-key-for-the-faults-test-4567"
CONFIG = """
admin: {token_env: GW_FAULTS_ADMIN_TOKEN}
limits: {body_read_timeout: 0.5}
backends:
  echo: {type: echo}
  up: {type: openai_chat, base_url: "http://127.0.0.1:9/v1", api_key_env: GW_FAULTS_UPSTREAM_KEY}
routes:
  echo: {backend: echo}
  up: {backend: up}
"""


class Served:
    """A ``gateway serve`` process, a client key it issued, and its log."""

    def __init__(self, process: processes.GatewayProcess, log: Path, key: str) -> None:
        self.process, self.log, self.key = process, log, key
        self.secrets = (key, ADMIN_TOKEN, UPSTREAM_KEY)

    async def send(self, raw: bytes) -> bytes:
        """Everything the gateway answers to ``raw`` before it closes the connection."""
        host, port = self.process.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(raw)
            return await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()

    def lines(self) -> list[dict[str, object]]:
        """The log so far, one parsed JSON object per line."""
        return [orjson.loads(line) for line in self.log.read_bytes().splitlines()]

    def assert_no_secret(self, text: bytes | str) -> None:
        raw = text.encode() if isinstance(text, str) else text
        for secret in self.secrets:
            assert secret.encode() not in raw, f"{secret[:12]}... in {raw[:300]!r}"
            assert secret[6:30].encode() not in raw  # nor the part after a key's prefix


@pytest.fixture
async def served(tmp_path: Path, redis_url: str, redis_client: object) -> AsyncIterator[Served]:
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG)
    log = tmp_path / "gateway.log"
    env = {"GW_FAULTS_ADMIN_TOKEN": ADMIN_TOKEN, "GW_FAULTS_UPSTREAM_KEY": UPSTREAM_KEY}
    with log.open("wb") as sink:
        process = await processes.serve(path, redis_url, env, log_level="DEBUG", log=sink)
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{process.url}/admin/keys",
                    json={"name": "faults", "balance": 1000},
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                ) as r,
            ):
                assert r.status == 201, await r.text()
                key = (await r.json())["key"]
            yield Served(process, log, key)
        finally:
            process.stop()


async def metrics(served: Served) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{served.process.url}/metrics") as r:
        return await r.text()


def head(path: str, *lines: bytes, method: bytes = b"GET") -> bytes:
    start = method + b" " + path.encode() + b" HTTP/1.1\r\nHost: gw\r\n"
    return start + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


Case = Callable[[Served], bytes]

MALFORMED: dict[str, Case] = {
    "NUL after a bearer key": lambda s: head(
        "/v1/models", b"Authorization: Bearer " + s.key.encode() + b"\x00x"
    ),
    "DEL after the admin token": lambda s: head(
        "/admin/keys", b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\x7f"
    ),
    "a header line over 8,190 bytes": lambda s: head(
        "/v1/models", b"Authorization: Bearer " + s.key.encode() + b"k" * 9000
    ),
    "an obs-fold continuation line": lambda s: head(
        "/v1/models", b"X-Note: a", b"  Bearer " + s.key.encode()
    ),
    "a control character in x-api-key": lambda s: head(
        "/v1/messages", b"x-api-key: " + s.key.encode() + b"\x01", method=b"POST"
    ),
    "the upstream key in a broken line": lambda s: head(
        "/v1/models", b"x-upstream: " + UPSTREAM_KEY.encode() + b"\x00"
    ),
    "a key in a malformed request line": lambda s: (
        b"GET /v1/models?k=" + s.key.encode() + b" HTTP/1.1 x\r\nHost: gw\r\n\r\n"
    ),
}


async def answered_and_logged(served: Served, raw: bytes) -> tuple[bytes, list[dict[str, object]]]:
    """The answer to ``raw``, and the log lines written while the gateway served it."""
    before = len(served.lines())
    answer = await served.send(raw)
    await asyncio.sleep(0.3)  # a drain after the answer may still log
    return answer, served.lines()[before:]


async def test_a_malformed_request_echoes_and_logs_no_secret(served: Served) -> None:
    # They were answered with the raw line quoted, and logged at ERROR with a traceback
    # quoting it too: client keys and the admin token were found in the log.
    for case, make in MALFORMED.items():
        answer, lines = await answered_and_logged(served, make(served))
        assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), (case, answer[:200])
        served.assert_no_secret(answer)
        assert answer.partition(b"\r\n\r\n")[2].startswith(b"400 Bad Request: "), case
        assert [(line["logger"], line["level"]) for line in lines] == [
            ("gateway.server.connection", "info")
        ], (case, lines)
        assert not [line for line in lines if "exception" in line], case
    served.process.stop()  # every line written and flushed
    served.assert_no_secret(served.log.read_text())


async def test_a_body_that_times_out_is_a_408_without_a_traceback(served: Served) -> None:
    raw = head(
        "/v1/chat/completions",
        b"Authorization: Bearer " + served.key.encode(),
        b"Content-Type: application/json",
        b"Content-Length: 100",
        method=b"POST",
    )
    answer, lines = await answered_and_logged(served, raw + b'{"model": "echo"')
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    # It was logged as "Unhandled exception" with a ConnectionAbortedError traceback. The
    # 408 is an answer like any other: the request metric counts it, and the access log
    # has its line, as for any request refused before a backend ran; nothing else.
    (line,) = lines
    assert (line["logger"], line["message"], line["status"]) == (
        "gateway.requests",
        "request refused",
        408,
    )
    assert "exception" not in line
    assert 'status="408"' in await metrics(served)


async def test_a_20_kb_header_is_one_calm_line(served: Served) -> None:
    answer, lines = await answered_and_logged(
        served, head("/v1/models", b"X-Big: " + b"a" * 20_000)
    )
    assert answer.startswith(b"HTTP/1.0 400"), answer[:200]
    assert b"too long (at most 8190 bytes)" in answer
    assert [(line["level"], line["fault"]) for line in lines] == [("info", "line_too_long")]
    assert not [line for line in lines if "exception" in line]  # the LineTooLong traceback


async def test_a_broken_content_encoding_is_a_400_without_a_traceback(served: Served) -> None:
    body = b"this is not gzip" * 8
    raw = head(
        "/v1/chat/completions",
        b"Authorization: Bearer " + served.key.encode(),
        b"Content-Encoding: gzip",
        f"Content-Length: {len(body)}".encode(),
        method=b"POST",
    )
    answer, lines = await answered_and_logged(served, raw + body)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert not [line for line in lines if "exception" in line], lines


async def test_client_faults_are_counted(served: Served) -> None:
    for _ in range(2):
        await served.send(head("/v1/models", b"X-Big: " + b"a" * 9000))
    await served.send(head("/v1/models", b"X-Bad: a\x00"))
    text = await metrics(served)
    assert 'gateway_client_faults_total{fault="line_too_long"} 2.0' in text
    assert 'gateway_client_faults_total{fault="bad_request"} 1.0' in text
